// Command idp is the OpenID provider of oneoff-runner's tests: Ory Hydra, built from the Go
// module proxy by scripts/idp.sh, run in memory on loopback, with a sign-in app that signs one
// configured user in and grants what the client asked for, without asking anyone.
//
//	idp serve --public 127.0.0.1:4444 --admin 127.0.0.1:4445 --login 127.0.0.1:4446 [--user alice]
//	idp hydra ARGS...   the upstream command, e.g. `idp hydra version`
//
// `serve` writes Hydra's configuration to a temporary directory: the issuer is
// http://PUBLIC (Hydra's development mode allows plain HTTP), access tokens are JWTs unless a
// client asks for opaque ones, dynamic client registration is on, storage is memory (nothing
// survives a restart) and telemetry is off. Never expose it beyond loopback: it signs anybody in.
package main

import (
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"path/filepath"

	"github.com/ory/hydra/v2/cmd"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "hydra" {
		os.Args = os.Args[1:]
		cmd.Execute()
		return
	}
	if len(os.Args) < 2 || os.Args[1] != "serve" {
		fmt.Fprintln(os.Stderr, "usage: idp serve --public ADDR --admin ADDR --login ADDR [--user NAME] | idp hydra ARGS...")
		os.Exit(2)
	}
	flags := flag.NewFlagSet("serve", flag.ExitOnError)
	public := flags.String("public", "127.0.0.1:4444", "address of Hydra's public port (the issuer)")
	admin := flags.String("admin", "127.0.0.1:4445", "address of Hydra's admin port")
	login := flags.String("login", "127.0.0.1:4446", "address of the sign-in app")
	user := flags.String("user", "alice", "who signs in when the client gives no login_hint")
	_ = flags.Parse(os.Args[2:])
	for _, address := range []string{*public, *admin, *login} {
		if !loopback(address) {
			log.Fatalf("idp: %s is not a loopback address; this provider signs anybody in", address)
		}
	}
	config, err := writeConfig(*public, *admin, *login)
	if err != nil {
		log.Fatalf("idp: %v", err)
	}
	go serveSignIn(*login, "http://"+*admin, *user)
	os.Setenv("SQA_OPT_OUT", "true")
	os.Args = []string{"hydra", "serve", "all", "--dev", "--sqa-opt-out", "--config", config}
	cmd.Execute()
}

func loopback(address string) bool {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func writeConfig(public, admin, login string) (string, error) {
	publicHost, publicPort, _ := net.SplitHostPort(public)
	adminHost, adminPort, _ := net.SplitHostPort(admin)
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp("", "idp-")
	if err != nil {
		return "", err
	}
	text := fmt.Sprintf(`dsn: memory
log: {level: warn}
serve:
  public: {host: %q, port: %s}
  admin: {host: %q, port: %s}
  cookies: {same_site_mode: Lax}
urls:
  self: {issuer: "http://%s", public: "http://%s", admin: "http://%s"}
  login: "http://%s/login"
  consent: "http://%s/consent"
  error: "http://%s/error"
secrets: {system: [%q]}
strategies:
  access_token: jwt
oidc:
  dynamic_client_registration:
    enabled: true
    default_scope: [openid, offline_access, runs]
webfinger:
  oidc_discovery:
    client_registration_url: "http://%s/oauth2/register"
`, publicHost, publicPort, adminHost, adminPort, public, public, admin, login, login, login,
		hex.EncodeToString(secret), public)
	path := filepath.Join(dir, "hydra.yaml")
	return path, os.WriteFile(path, []byte(text), 0o600)
}
