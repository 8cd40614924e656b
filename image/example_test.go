package image_test

import (
	"context"
	"fmt"
	"log"

	"github.com/vzfleet/vzfleet/image"
)

// How vz-node uses the cache at pod start: pull per the pod's
// imagePullPolicy with the pod's pull secrets, show progress, boot from
// the returned paths (through copy-on-write clones), and keep the cache
// within its budget.
func ExampleCache_Pull() {
	cache, err := image.OpenCache("/var/lib/vz-node/images", image.Options{})
	if err != nil {
		log.Fatal(err)
	}
	secret := []byte(`{"auths":{"ghcr.io":{"auth":"..."}}}`) // a pod's .dockerconfigjson
	img, err := cache.Pull(context.Background(), "ghcr.io/cirruslabs/macos-sequoia-base:latest", image.PullOptions{
		Policy: image.PullIfNotPresent,
		Auth:   &image.Auth{DockerConfigJSON: [][]byte{secret}},
		Progress: func(p image.Progress) {
			fmt.Printf("%s: %s of %s\n", p.Reference, image.HumanBytes(p.BytesDone), image.HumanBytes(p.BytesTotal))
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(img.Disk, img.NVRAM, img.VM.CPUCount, img.VM.HardwareModel != "")
	if _, err := cache.Prune(context.Background(), 200<<30); err != nil {
		log.Fatal(err)
	}
}
