"""What the kubelet does to a container's `env` values, `command` and `args` before it starts it:
`$(NAME)` becomes NAME's value, `$$` becomes `$` (Kubernetes' forked `expansion` package). A warm
pod's line must do the same to be the Job's run; a pure function, for the fast lane."""

from __future__ import annotations

from collections.abc import Mapping, Sequence


def expand(text: str, values: Mapping[str, str]) -> str | None:
    """`text` as the kubelet expands it with `values`; None when it names a variable not in
    `values` (the kubelet would look in variables it adds, such as the API server's service:
    a warm pod leaves that run to a Job)."""
    out, at = [], 0
    while at < len(text):
        if text[at] != "$" or at + 1 == len(text):
            out.append(text[at])
            at += 1
            continue
        following = text[at + 1]
        if following == "$":
            out.append("$")
            at += 2
        elif following == "(" and (end := text.find(")", at + 2)) != -1:
            name = text[at + 2 : end]
            if name not in values:
                return None
            out.append(values[name])
            at = end + 1
        else:
            out.append("$" + following)  # `$(` with no `)` is kept, as is any other `$`
            at += 2
    return "".join(out)


def expanded(
    env: Mapping[str, str], argv: Sequence[str]
) -> tuple[dict[str, str], list[str]] | None:
    """The environment (each value expanded with the variables before it, in order) and the
    argv (with all of them) the kubelet gives the container; None when any names a variable
    the request does not set."""
    done: dict[str, str] = {}
    for name, value in env.items():
        result = expand(value, done)
        if result is None:
            return None
        done[name] = result
    words = [expand(word, done) for word in argv]
    if any(word is None for word in words):
        return None
    return done, [word for word in words if word is not None]
