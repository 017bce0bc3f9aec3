package api

// InitramfsService is what the initramfs routes need. Owned by the
// initramfs part.
type InitramfsService interface{}

func (s *Server) initramfsRoutes() {}
