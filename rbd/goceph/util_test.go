package goceph

import (
	"netboot/rbd"
	"netboot/test/cephlab"
)

func cephlabHolder(img rbd.Image, bind string) cephlab.HolderConfig {
	return cephlab.HolderConfig{Pool: img.Pool, Image: img.Name, Bind: bind}
}
