package api

// LogService is what the log routes need from netconsole. Owned by the
// netconsole part.
type LogService interface{}

func (s *Server) logRoutes() {}
