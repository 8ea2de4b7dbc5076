// Package storagetest is the conformance suite of storage.Store: every
// method of the interface and every promise of package storage's doc
// comment, written against the interface alone so that each backend runs
// the same tests. A backend package calls Run from its own test:
//
//	func TestConformance(t *testing.T) {
//		t.Run("bbolt", func(t *testing.T) { storagetest.Run(t, backend) })
//	}
//
// (storage/boltstore/conformance_test.go does so for bbolt.) Each subtest
// is named for the promise it checks
// (TestConformance/bbolt/UIDsAscendNeverReused). What a backend does
// inside (encodings, group commit, file layout, corruption) is tested by
// the backend's own tests, not here.
package storagetest

import (
	"testing"

	"github.com/pochta/pochta/storage"
)

// Backend is one implementation of storage.Store under test.
type Backend struct {
	// New creates a new, empty store for one test and returns it with the
	// location of its data (a bbolt file path, a database name), which
	// Open accepts and Stats reports as Path. The backend closes the store when the test ends;
	// closing a store twice must be harmless.
	New func(t *testing.T) (storage.Store, string)
	// Open opens the existing store at location, as a restart does, and
	// closes it when the test ends. The kill test also calls it in a child
	// process (the test binary run again), which must be able to open the
	// data with nothing but the location.
	Open func(t *testing.T, location string) storage.Store
	// OpenBackup opens what Store.Backup wrote as a store of its own.
	OpenBackup func(t *testing.T, backup []byte) storage.Store
	// NewWithQuota is New for a store whose users may each keep quota
	// bytes (storage.Options.Quota).
	NewWithQuota func(t *testing.T, quota int64) storage.Store
	// NoBackup, when not empty, says why the backend has no Backup of its
	// own (PostgreSQL: pg_dump's job). BackupOpensAsAStoreOfItsOwn then
	// checks that Backup refuses with errors.ErrUnsupported and writes
	// nothing, instead of opening a copy; OpenBackup may be nil.
	NoBackup string
}

// contract is every subtest Run runs, in order.
var contract = []struct {
	name string
	run  func(t *testing.T, b Backend)
}{
	// Users (users.go).
	{"UsersStoredLowerCasedNoDuplicates", usersStoredLowerCasedNoDuplicates},
	{"UsersInvalidAddressesAndPasswordsRefused", usersInvalidAddressesAndPasswordsRefused},
	{"AuthenticateAcceptsOnlyTheRightPassword", authenticateAcceptsOnlyTheRightPassword},
	{"SetPasswordReplacesTheOldOne", setPasswordReplacesTheOldOne},
	{"DeleteUserRemovesMailboxesAndMail", deleteUserRemovesMailboxesAndMail},
	{"UsersListedByAddress", usersListedByAddress},
	{"SettingsStored", settingsStored},

	// Mailboxes (mailboxes.go).
	{"NewUserHasTheFourSpecialUseMailboxes", newUserHasTheFourSpecialUseMailboxes},
	{"ProtectedMailboxesCannotBeDeletedOrRenamed", protectedMailboxesCannotBeDeletedOrRenamed},
	{"CreateMailboxCreatesMissingParents", createMailboxCreatesMissingParents},
	{"InboxMatchedCaseInsensitively", inboxMatchedCaseInsensitively},
	{"RenameMovesChildrenAndKeepsIdentity", renameMovesChildrenAndKeepsIdentity},
	{"RenameRefusedWhenAChildWouldCollide", renameRefusedWhenAChildWouldCollide},
	{"DeleteMailboxKeepsChildren", deleteMailboxKeepsChildren},
	{"SubscriptionStored", subscriptionStored},
	{"SubscriptionsByName", subscriptionsByName},

	// Messages (messages.go).
	{"AppendedMessageLoadsBack", appendedMessageLoadsBack},
	{"AppendKeepsTheCallersEnvelope", appendKeepsTheCallersEnvelope},
	{"AppendRefusesBadInput", appendRefusesBadInput},
	{"HeaderLoadsTheRawHeaderAlone", headerLoadsTheRawHeaderAlone},
	{"StoreFlagsChangesFlagsAndUnseenCounter", storeFlagsChangesFlagsAndUnseenCounter},
	{"ExpungeRemovesOnlyDeletedMessages", expungeRemovesOnlyDeletedMessages},
	{"CopyKeepsFlagsAndDate", copyKeepsFlagsAndDate},
	{"MoveAppendsThenExpungesInOneCommit", moveAppendsThenExpungesInOneCommit},
	{"DeliverWritesSentAndEveryInboxCopy", deliverWritesSentAndEveryInboxCopy},
	{"StatsCount", statsCount},
	{"BackupOpensAsAStoreOfItsOwn", backupOpensAsAStoreOfItsOwn},
	{"CheckFindsNothingInAHealthyStore", checkFindsNothingInAHealthyStore},

	// The promises of the package doc (promises.go).
	{"DurableAcrossReopen", durableAcrossReopen},
	{"DurableAcrossKill", durableAcrossKill},
	{"DeliverAllOrNothing", deliverAllOrNothing},
	{"UIDsAscendNeverReused", uidsAscendNeverReused},
	{"UIDValidityChangesOnRecreate", uidValidityChangesOnRecreate},
	{"IsolationBetweenUsers", isolationBetweenUsers},
	{"ReadsReturnCopies", readsReturnCopies},
	{"ReturnedDataOutlivesTheStore", returnedDataOutlivesTheStore},
	{"EventsInCommitOrder", eventsInCommitOrder},
	{"EventsForEveryCommittedChange", eventsForEveryCommittedChange},

	// The outbound queue (queue.go).
	{"QueueDeliverQueuesExternalRecipients", queueDeliverQueuesExternalRecipients},
	{"QueueDeliverWithAnUnrelayableAddressStoresNothing", queueDeliverWithAnUnrelayableAddressStoresNothing},
	{"QueueSystemMailHasSourceSystem", queueSystemMailHasSourceSystem},
	{"QueueFilterSelectsAndRejectsUnknownValues", queueFilterSelectsAndRejectsUnknownValues},
	{"QueueDueEntriesEarliestFirst", queueDueEntriesEarliestFirst},
	{"QueueClaimLimitsSystemFirstAndCountsSurviveReopen", queueClaimLimitsSystemFirstAndCountsSurviveReopen},
	{"QueueSettleWritesNoticesAndRefusesAStaleEntry", queueSettleWritesNoticesAndRefusesAStaleEntry},
	{"QueueResendAndDelete", queueResendAndDelete},
	{"QueueRelayStateAlertsOnlyWhenItChanges", queueRelayStateAlertsOnlyWhenItChanges},
	{"QueueReadsOnAFreshStoreAreEmpty", queueReadsOnAFreshStoreAreEmpty},

	// Read tracking (tracking.go).
	{"TrackingSentCopySeenWhenTheLastRecipientReads", trackingSentCopySeenWhenTheLastRecipientReads},
	{"TrackingUnreadCopyExpungedCountsAsDeleted", trackingUnreadCopyExpungedCountsAsDeleted},
	{"TrackingExpiredCopySettlesTheSentCopy", trackingExpiredCopySettlesTheSentCopy},
	{"TrackingDeletedUsersSettleTheirPart", trackingDeletedUsersSettleTheirPart},
	{"TrackingSentStatusListsOnlyTheUsersOwn", trackingSentStatusListsOnlyTheUsersOwn},
	{"TrackingInboundMailNotTracked", trackingInboundMailNotTracked},
	{"TrackingSurvivesReopen", trackingSurvivesReopen},
	{"TrackingAppendOfTheServersSentCopyReturnsIt", trackingAppendOfTheServersSentCopyReturnsIt},
	{"TrackingAppendWithAnotherUsersMessageIDStored", trackingAppendWithAnotherUsersMessageIDStored},
	{"TrackingAppendWithoutMessageIDNeverMerged", trackingAppendWithoutMessageIDNeverMerged},
	{"TrackingExpungedSentCopyNotReturned", trackingExpungedSentCopyNotReturned},

	// The unread lifetime (expiry.go).
	{"ExpiryDeletesOnlyOldUnreadInboxMessages", expiryDeletesOnlyOldUnreadInboxMessages},
	{"ExpiryAfterMarkingUnreadAgain", expiryAfterMarkingUnreadAgain},
	{"ExpiryFollowsMovesIntoAndOutOfInbox", expiryFollowsMovesIntoAndOutOfInbox},

	// The queue lease and retention (issue 11 items 3 and 4).
	{"QueueLeaseExclusiveBetweenHandles", queueLeaseExclusiveBetweenHandles},
	{"QueueRetention", queueRetention},

	// MULTIAPPEND and the quota (issue 12, quota.go).
	{"AppendManyAllOrNothing", appendManyAllOrNothing},
	{"AppendManySentDuplicateKeepsItsPlace", appendManySentDuplicateKeepsItsPlace},
	{"QuotaBoundsAppendAndCopy", quotaBoundsAppendAndCopy},
}

// Run runs the whole contract against b, one subtest per promise.
func Run(t *testing.T, b Backend) {
	for _, c := range contract {
		t.Run(c.name, func(t *testing.T) { c.run(t, b) })
	}
}
