package node

import (
	"context"
	"errors"

	corev1 "k8s.io/api/core/v1"
)

// localFirst serves images unpacked by hand under the cache directory
// (LocalDirSource) and pulls everything else with next (the OCI pull
// engine), so a host can run an image without a registry.
type localFirst struct {
	local LocalDirSource
	next  ImageSource
}

func (s localFirst) Ensure(ctx context.Context, ref string, policy corev1.PullPolicy, auth []RegistryAuth) (LocalImage, error) {
	img, err := s.local.Ensure(ctx, ref, policy, auth)
	if err == nil || !errors.Is(err, ErrImageNotFound) {
		return img, err
	}
	return s.next.Ensure(ctx, ref, policy, auth)
}

// Images implements ImageLister through the pull engine behind the local
// directories.
func (s localFirst) Images() ([]corev1.ContainerImage, error) {
	if l, ok := s.next.(ImageLister); ok {
		return l.Images()
	}
	return nil, nil
}
