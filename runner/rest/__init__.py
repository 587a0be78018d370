"""The REST door: routes by resource (`run`, `runs`, `files`, `volumes`, `inventory`,
`health`) and what only they need (request bodies, multipart, dependencies, error answers,
the docs pages). `api_app.create_app` assembles them."""
