"""The Kubernetes backend (`backend.KubernetesBackend`): each run a batch/v1 Job. The Job core
both run kinds use (`jobs`), async runs kept on the API server (`runs`), a run's pod (`pods`),
manifests (`manifests`), listings and the RBAC it needs (`inventory`), the error boundary
(`errors`), and the code of the runner's own image inside run pods (`pod_helper`)."""
