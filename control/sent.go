package control

import "net/http"

// SentAPI reports read tracking: who has not read a user's sent messages.
//
// TODO(issue 4): sent status.
type SentAPI interface{}

func (h *handler) registerSent(mux *http.ServeMux) {}
