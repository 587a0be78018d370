"""The `oneoff-runner` command: `serve`, `mcp`, `pod-helper` (`main`), and the client commands
`run`, `runs`, `logs`, `cancel` (`console`) over a server or an in-process service (`client`).

A front door like `api_app` and `mcp_app`: it assembles the service and so may choose a backend.
"""
