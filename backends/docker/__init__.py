"""The Docker Engine backend (`engine.DockerBackend`), one module per concern: synchronous runs
(`engine`), async runs kept on the engine (`runs`), content in and out through the archive API
(`content`), output capture (`output`), pulls (`pull`), listings (`inventory`), and the one
boundary where docker-py's errors become the runner's (`errors`)."""
