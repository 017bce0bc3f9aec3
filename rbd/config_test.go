package rbd

import (
	"time"

	"netboot/internal/config"
)

func configRBD(unrecorded string, removeRange *bool, expiry time.Duration) config.RBD {
	return config.RBD{UnrecordedSameIP: unrecorded, RemoveRangeBlocklist: removeRange, BlocklistExpiry: config.Duration(expiry)}
}
