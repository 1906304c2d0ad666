"""The one store object: every SQL statement HelixCode runs lives behind its methods.

Its parts live in their own modules over a shared ``StoreBase``: ``claims`` (leasing ready tasks),
``leases`` (fenced writes under a lease: renewal, progress, checkpoints), ``outcomes`` (how a lease
ends: success, failure, hand-back; PostgreSQL's success statements in ``success``), ``propagation``
(what a finished task changes for its job), ``maintenance`` (the reaper's pass, one ordered list of
steps), ``expand``, ``control``, ``jobs``, ``workers``, ``tokens``, ``inspect``,
``limits`` (the fleet's shared LLM limits), ``usage`` (every model call's tokens and cost),
``metrics`` (the logs rolled up into the fleet's counters), ``retention`` (pruning finished work by
policy, after the metrics have counted it), ``outbox`` (notifications to deliver), ``browse`` (what
the web dashboard reads). Dialect differences (SQLite vs PostgreSQL) stay inside this package.
"""

from __future__ import annotations

from helixcode.store.browse import BrowseOps
from helixcode.store.control import ControlOps
from helixcode.store.expand import ExpandOps
from helixcode.store.inspect import InspectOps
from helixcode.store.jobs import JobOps
from helixcode.store.limits import LimitOps
from helixcode.store.maintenance import MaintenanceOps
from helixcode.store.outbox import OutboxOps
from helixcode.store.outcomes import OutcomeOps
from helixcode.store.retention import RetentionOps
from helixcode.store.tokens import TokenOps
from helixcode.store.usage import UsageOps

__all__ = ["Store"]


class Store(
    BrowseOps,
    JobOps,
    ControlOps,
    ExpandOps,
    OutcomeOps,
    MaintenanceOps,
    TokenOps,
    InspectOps,
    LimitOps,
    UsageOps,
    RetentionOps,
    OutboxOps,
):
    """Async access to the system of record. Open with ``await Store.open(settings)``."""
