package storage

// CheckReport is what Check found. The JSON names are SPEC.md's.
type CheckReport struct {
	// Checked counts the records read: users, mailboxes and messages.
	Checked int         `json:"checked"`
	Bad     []BadRecord `json:"bad"`
}

// BadRecord is one record Check could not decode. UID is 0 for a user or
// mailbox record, or for a damaged part of the tree.
type BadRecord struct {
	User    string `json:"user"`
	Mailbox string `json:"mailbox"`
	UID     uint32 `json:"uid"`
	Error   string `json:"error"`
	// Quarantined is true when repair moved the message to the quarantine.
	Quarantined bool `json:"quarantined,omitempty"`
}

// Remaining counts the bad records repair did not (or could not) move away.
func (r *CheckReport) Remaining() int {
	n := 0
	for _, b := range r.Bad {
		if !b.Quarantined {
			n++
		}
	}
	return n
}
