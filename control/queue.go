package control

import "net/http"

// QueueAPI administers the outbound queue.
//
// TODO(issue 3): list, show, resend, delete.
type QueueAPI interface{}

func (h *handler) registerQueue(mux *http.ServeMux) {}
