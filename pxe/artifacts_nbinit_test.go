package pxe

import (
	"context"
	"errors"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"netboot/internal/config"
)

// imageFunc adapts a function to an InitrdProvider.
type imageFunc func(context.Context, *config.Host) (string, error)

func (f imageFunc) InitrdPath(ctx context.Context, h *config.Host) (string, error) { return f(ctx, h) }

// TestArtifactsServeNBInit: a Pi whose class initrd is "nbinit" asking for
// nbinit.img (by serial prefix or by IP) gets its own assembled image; a
// host of another class, or an unknown client, does not.
func TestArtifactsServeNBInit(t *testing.T) {
	cfg, plain := newArtTree(t)
	plain.Close()
	cl := cfg.Classes["cm4"]
	cl.Initrd = InitrdNBInit
	cfg.Classes["cm4"] = cl
	images := t.TempDir()
	var asked []string
	provider := imageFunc(func(_ context.Context, h *config.Host) (string, error) {
		asked = append(asked, h.Name)
		if h.Name == "pi-b" {
			return "", errors.New("base image still building")
		}
		p := filepath.Join(images, h.Name+".img")
		return p, os.WriteFile(p, []byte("image-of-"+h.Name), 0o644)
	})
	a, err := NewArtifacts(cfg, nil, ArtifactsConfig{Initrd: provider})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()

	for _, req := range []Request{
		{Path: "d9780558/nbinit.img"},
		{Path: "nbinit.img", Client: netip.MustParseAddr("127.0.0.21")},
	} {
		art, err := a.Open(req)
		if err != nil {
			t.Fatalf("Open(%+v): %v", req, err)
		}
		body, _ := io.ReadAll(io.NewSectionReader(art.ReaderAt(), 0, art.Size))
		art.Close()
		if string(body) != "image-of-pi-a" || art.Role != RoleInitramfs || art.Host == nil || art.Host.Name != "pi-a" {
			t.Errorf("Open(%+v) = %q role %s host %v, want pi-a's image as initramfs", req, body, art.Role, art.Host)
		}
	}
	if _, err := a.Open(Request{Path: "0badcafe/nbinit.img"}); !errors.Is(err, ErrNotFound) {
		t.Errorf("image not ready: err = %v, want ErrNotFound (the Pi retries)", err)
	}
	for _, req := range []Request{
		{Path: "nbinit.img", Client: netip.MustParseAddr("127.0.0.30")}, // udoo: class initrd is a file
		{Path: "nbinit.img", Client: netip.MustParseAddr("127.0.0.99")}, // unknown client
	} {
		if _, err := a.Open(req); !errors.Is(err, ErrNotFound) {
			t.Errorf("Open(%+v) err = %v, want ErrNotFound from the tree", req, err)
		}
	}
	if want := []string{"pi-a", "pi-a", "pi-b"}; len(asked) != len(want) {
		t.Errorf("provider asked for %v, want %v", asked, want)
	}
}
