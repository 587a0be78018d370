package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log"
	"net/http"
	"net/url"
	"time"
)

// serveSignIn runs Hydra's login and consent app: every login is accepted as the client's
// login_hint (or `user`), and every consent grants the scopes asked for and, as audience, both
// the `audience` and the RFC 8707 `resource` the client named (Hydra itself reads only
// `audience`; MCP clients send `resource`).
func serveSignIn(address, admin, user string) {
	app := signIn{admin: admin, user: user, client: &http.Client{Timeout: 10 * time.Second}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /login", app.login)
	mux.HandleFunc("GET /consent", app.consent)
	mux.HandleFunc("GET /error", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, r.URL.Query().Get("error")+": "+r.URL.Query().Get("error_description"),
			http.StatusBadRequest)
	})
	server := &http.Server{Addr: address, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	log.Fatal(server.ListenAndServe())
}

type signIn struct {
	admin  string
	user   string
	client *http.Client
}

type loginRequest struct {
	OIDCContext struct {
		LoginHint string `json:"login_hint"`
	} `json:"oidc_context"`
}

type consentRequest struct {
	RequestedScope    []string `json:"requested_scope"`
	RequestedAudience []string `json:"requested_access_token_audience"`
	RequestURL        string   `json:"request_url"`
}

func (s signIn) login(w http.ResponseWriter, r *http.Request) {
	challenge := r.URL.Query().Get("login_challenge")
	var request loginRequest
	if !s.call(w, http.MethodGet, "login", "", challenge, nil, &request) {
		return
	}
	subject := request.OIDCContext.LoginHint
	if subject == "" {
		subject = s.user
	}
	s.accept(w, r, "login", challenge, map[string]any{"subject": subject, "remember": false})
}

func (s signIn) consent(w http.ResponseWriter, r *http.Request) {
	challenge := r.URL.Query().Get("consent_challenge")
	var request consentRequest
	if !s.call(w, http.MethodGet, "consent", "", challenge, nil, &request) {
		return
	}
	audience := append([]string{}, request.RequestedAudience...)
	if asked, err := url.Parse(request.RequestURL); err == nil {
		audience = append(audience, asked.Query()["resource"]...)
	}
	s.accept(w, r, "consent", challenge, map[string]any{
		"grant_scope":                 request.RequestedScope,
		"grant_access_token_audience": audience,
		"remember":                    false,
	})
}

// accept tells Hydra the flow step is done and sends the browser where Hydra says.
func (s signIn) accept(w http.ResponseWriter, r *http.Request, kind, challenge string, body any) {
	var answer struct {
		RedirectTo string `json:"redirect_to"`
	}
	if s.call(w, http.MethodPut, kind, "/accept", challenge, body, &answer) {
		http.Redirect(w, r, answer.RedirectTo, http.StatusFound)
	}
}

// call is one request to Hydra's admin API about a login or consent challenge; on failure it
// answers the browser with 502 and returns false.
func (s signIn) call(w http.ResponseWriter, method, kind, action, challenge string, body, into any) bool {
	target := fmt.Sprintf("%s/admin/oauth2/auth/requests/%s%s?%s_challenge=%s",
		s.admin, kind, action, kind, url.QueryEscape(challenge))
	var payload bytes.Buffer
	if body != nil {
		_ = json.NewEncoder(&payload).Encode(body)
	}
	request, _ := http.NewRequest(method, target, &payload)
	request.Header.Set("Content-Type", "application/json")
	response, err := s.client.Do(request)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return false
	}
	defer response.Body.Close()
	if response.StatusCode != http.StatusOK {
		http.Error(w, fmt.Sprintf("hydra answered %s to %s %s%s", response.Status, method, kind, action),
			http.StatusBadGateway)
		return false
	}
	if err := json.NewDecoder(response.Body).Decode(into); err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return false
	}
	return true
}
