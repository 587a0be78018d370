"""The Docker Engine backend (`backend.DockerBackend`), one module per concern: the container
core both run kinds use (`containers`), synchronous runs (`attached`), async runs kept on the
engine (`runs`), content in and out through the archive API (`content`, `returned`), output
capture (`output`), pulls (`pull`), listings (`inventory`), and the one boundary where
docker-py's errors become the runner's (`errors`)."""
