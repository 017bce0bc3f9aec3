//go:build tools

package initramfs

// The rescue shell is compiled into the image from netboot's module, so
// go.mod must require its module graph; this import keeps `go mod tidy`
// from dropping it.
import _ "github.com/u-root/u-root/cmds/core/gosh"
