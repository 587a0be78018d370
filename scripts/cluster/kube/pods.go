package main

import (
	"context"
	"fmt"
	"os"
	"time"

	noop "go.opentelemetry.io/otel/trace/noop"
	cri "k8s.io/cri-client/pkg"
)

// removePods stops and removes every pod sandbox of the CRI runtime at the endpoint, through
// the CRI as the kubelet would: the runtime tears down each pod's network (CNI DEL), mounts
// and processes. `cluster.sh down` calls it once the kubelet has stopped.
func removePods(endpoint string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	runtime, err := cri.NewRemoteRuntimeService(ctx, endpoint, 30*time.Second, noop.NewTracerProvider(), false)
	if err != nil {
		return err
	}
	pods, err := runtime.ListPodSandbox(ctx, nil)
	if err != nil {
		return err
	}
	for _, pod := range pods {
		if err := runtime.StopPodSandbox(ctx, pod.Id); err != nil {
			return fmt.Errorf("stopping pod %s/%s: %w", pod.Metadata.Namespace, pod.Metadata.Name, err)
		}
		if err := runtime.RemovePodSandbox(ctx, pod.Id); err != nil {
			return fmt.Errorf("removing pod %s/%s: %w", pod.Metadata.Namespace, pod.Metadata.Name, err)
		}
	}
	fmt.Fprintf(os.Stderr, "removed %d pods\n", len(pods))
	return nil
}
