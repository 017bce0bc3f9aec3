package api

// RootService is what the root hand-over routes need from rbd/. Owned by the
// rbd part.
type RootService interface{}

func (s *Server) rbdRoutes() {}
