// Package rbd is the server side of the RBD root hand-over: it decides,
// from what Ceph shows and what netbootd knows about a booting host,
// whether the root image's exclusive lock may be broken, and applies that
// decision safely.
//
// The package is pure Go (no cgo): Cluster is our small interface over
// Ceph, implemented with librados/librbd in rbd/goceph. Decide is the
// decision as a pure function (Input → Plan: actions or a refusal); the
// Executor observes, decides, applies each action under a per-call
// deadline, verifies it, records it as a Step, and serialises per image.
//
// # Rules (README "RBD hand-over")
//
//  1. Nothing is done unless a boot attempt of the host is in progress and
//     the request comes from the host's IP (ReasonNotBooting,
//     ReasonWrongCaller).
//  2. An owner equal to the client address the previous boot recorded
//     (POST …/root/mapped) is fenced exactly (blocklist ip:port/nonce) and
//     its lock broken.
//  3. An owner on the host's IP with another address: Policy
//     BreakUnrecordedSameIP; default refuse (see Policy for why).
//  4. An owner on any other IP is never broken (ReasonForeignOwner, the
//     refusal names the holder).
//  5. Whole-IP ("ip:0/0") and CIDR blocklist entries covering the host are
//     removed (Policy.RemoveRangeBlocklist); exact entries are left to
//     expire: they never block a new client (new nonce).
//  6. Every Ceph call is bounded (ExecutorConfig.CallTimeout); a failure
//     stops the plan, and Result.Steps says exactly what was done. Every
//     step is safe to re-plan, so a retry finishes the work.
//  7. Every action and refusal is logged, counted (Metrics) and returned
//     in the Result that the API turns into boot-timeline events.
//
// Order of actions: blocklist-add, break-lock, then blocklist-remove.
// Fencing first means a hung (not dead) old client can never write after
// its lock is gone; removing whole-IP entries last means the old client is
// already fenced by its exact entry when the broad one goes.
//
// # Per-host cephx keys
//
// The booting host needs a key to map its image, and the admin key must
// never leave the server. netbootd therefore creates (or fetches) a cephx
// user per host, client.netboot-<host>, with `auth get-or-create` on its
// admin connection (Cluster.HostKey). Its caps are limited to that host's
// image: mon "profile rbd" (the kernel may blocklist a dead owner itself)
// and osd rwx only on the object prefixes of that one image (rbd_id.<name>,
// rbd_header.<id>, rbd_data.<id>, rbd_object_map.<id>), plus read of the
// pool's rbd_info (librbd reads pool settings there on open). The key is
// returned by root/prepare to the host only, over the host-bound call; a
// leaked key opens that one image and nothing else. See HostCaps.
package rbd
