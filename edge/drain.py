"""The outbox drain's bookkeeping, without I/O: which rows to send next, what a PUBACK means
for the outbox, and when rows go out again.

``edge.link`` feeds it the session (a new one forgets what was in flight: unacked rows stay
in the outbox and are sent again), the PUBACKs and its publishes; it asks it how many rows
there is room for, after which sequence number, and whether a row is a resend (``hist``).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Acks:
    """What a batch of PUBACKs means: rows to delete (``done``), of which ``refused`` the
    broker refused (dropped: sending them again would be refused again)."""

    done: list[int] = field(default_factory=list)
    refused: list[int] = field(default_factory=list)


@dataclass
class Drain:
    #: rows in flight at most
    window: int
    #: rows up to here were (or may have been) sent before: a resend is marked hist
    resend_upto: int
    session: int = -1
    #: message id -> outbox seq, for the current session only
    inflight: dict[int, int] = field(default_factory=dict)
    #: the last seq sent in this session (the next rows come after it)
    sent_upto: int = 0

    def on_session(self, session: int) -> None:
        """The connection is ``session`` (any int; -1 none): a new one starts over."""
        if session != self.session:
            self.session = session
            self.inflight.clear()
            self.sent_upto = 0

    def on_acks(self, acks: list[tuple[int, int, bool]]) -> Acks:
        """(session, mid, ok) of the PUBACKs heard: acks of older sessions mean nothing."""
        out = Acks()
        for session, mid, ok in acks:
            if session != self.session or mid not in self.inflight:
                continue
            seq = self.inflight.pop(mid)
            out.done.append(seq)
            if not ok:
                out.refused.append(seq)
        return out

    def ack_failed(self) -> None:
        """The outbox could not delete acked rows: they stay queued, so send them again
        (the hub drops the repeats)."""
        self.sent_upto = 0

    @property
    def room(self) -> int:
        return self.window - len(self.inflight)

    def is_resend(self, seq: int) -> bool:
        return seq <= self.resend_upto

    def sent(self, mid: int, seq: int) -> None:
        self.inflight[mid] = seq
        self.sent_upto = seq
        self.resend_upto = max(self.resend_upto, seq)
