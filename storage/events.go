package storage

// Events collects the events of one write transaction (one request run),
// published to the listeners after its commit.
type Events struct {
	origin Origin
	list   []Event
}

// Add adds an event caused by the writer: it carries the writer's origin
// (WithOrigin), so the writing session can tell its own changes.
func (e *Events) Add(ev Event) { e.add(ev) }

// AddUntagged adds an event the store causes on its own account (a
// tracked Sent copy turning \Seen, a recipient settling): it carries no
// origin, so every session, the writer's included, is told.
func (e *Events) AddUntagged(ev Event) { e.list = append(e.list, ev) }

func (e *Events) add(ev Event) {
	ev.Origin = e.origin
	e.list = append(e.list, ev)
}

// NewEvents returns an empty list for a write made by origin.
func NewEvents(origin Origin) Events { return Events{origin: origin} }

// List returns the events added, in order.
func (e *Events) List() []Event { return e.list }

// Reset empties the list (a transaction run again starts afresh).
func (e *Events) Reset() { e.list = e.list[:0] }
