package api

// BootService is what the boot routes need from the tracker (internal/boot).
// Owned by the outcomes part.
type BootService interface{}

func (s *Server) bootRoutes() {}
