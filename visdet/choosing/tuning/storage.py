"""Where a study lives: an SQLite file in the work dir by default, any SQLAlchemy database for several machines.

Optuna's ``RDBStorage`` does the work; this module picks the URL, gives the
storage a heartbeat (a worker killed mid-trial leaves a RUNNING trial that the
next worker marks failed and re-queues with the same parameters, through
``RetryHeartbeatStaleTrialCallback``; Optuna 4.9 renamed it from
``RetryFailedTrialCallback``) and turns every way a URL can be wrong
(malformed, unknown database, missing driver, server unreachable) into one
:class:`ConfigError` on ``--storage`` before any training: Optuna would only
fail with SQLAlchemy's traceback, or after a trial had started.
"""
from __future__ import annotations

import importlib.util
import os
import os.path as osp
import time
import warnings

import optuna
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, make_url

from visdet.errors import ConfigError

KEY = "--storage"
#: Seconds between a running trial's heartbeats, and how long without one makes it stale (Optuna's default grace
#: is twice the interval; a trial's validation can hold the GIL for a while, so three).
HEARTBEAT_INTERVAL_S = 20
GRACE_PERIOD_S = 60
#: How often a stale trial (its worker died) is run again before it stays failed.
MAX_RETRY = 2
#: Times a worker retries opening a new database whose tables another worker is creating at that moment.
SCHEMA_RACE_RETRIES = 4
#: Seconds to wait for a database server to answer before calling it unreachable.
CONNECT_TIMEOUT_S = 10

#: The drivers SQLAlchemy can use per database, the first importable one chosen when the URL names none, and what
#: to install. SQLAlchemy 2.1's default PostgreSQL driver is psycopg (3); visdet's ``tune`` extra installs
#: psycopg2-binary, so a plain ``postgresql://`` URL is given whichever of the two is here.
_DRIVERS = {
    "postgresql": (("psycopg2", "psycopg2"), ("psycopg", "psycopg")),
    "mysql": (("pymysql", "pymysql"), ("mysqldb", "MySQLdb")),
}
_INSTALL = {"psycopg2": "pip install psycopg2-binary (or pip install -e '.[tune]')", "psycopg": "pip install psycopg",
            "pymysql": "pip install pymysql", "mysqldb": "pip install mysqlclient"}


def default_url(work_dir: str) -> str:
    """``sqlite:///<work_dir>/study.db`` (absolute, so ``optuna-dashboard`` reads it from anywhere)."""
    return f"sqlite:///{osp.abspath(osp.join(work_dir, 'study.db'))}"


def _parse(url: str) -> URL:
    try:
        parsed = make_url(url)
    except sa_exc.ArgumentError:
        raise ConfigError(f"'{url}' is not a database URL; give an SQLAlchemy URL such as "
                          "postgresql://USER:PASSWORD@HOST:5432/DB or sqlite:///path/study.db "
                          "(or leave --storage out for an SQLite file in the work dir)", KEY) from None
    return parsed


def _with_driver(url: URL, text: str) -> URL:
    """``url`` with an importable driver; a missing one is a ConfigError saying what to install."""
    backend = url.get_backend_name()
    drivers = _DRIVERS.get(backend)
    if drivers is None:
        return url
    if "+" in url.drivername:
        named = url.get_driver_name()
        module = dict(drivers).get(named, named)
        if importlib.util.find_spec(module) is None:
            raise ConfigError(f"'{text}' needs the Python driver '{named}', which is not installed: "
                              f"{_INSTALL.get(named, 'pip install ' + named)}", KEY)
        return url
    for name, module in drivers:
        if importlib.util.find_spec(module) is not None:
            return url.set(drivername=f"{backend}+{name}")
    first = drivers[0][0]
    raise ConfigError(f"'{text}' needs a {backend} driver for Python and none is installed: {_INSTALL[first]}", KEY)


def _engine_kwargs(url: URL) -> dict:
    backend = url.get_backend_name()
    if backend == "sqlite":
        # Several local workers on one file: wait for the write lock instead of failing with "database is locked".
        return {"connect_args": {"timeout": 60}}
    if backend == "postgresql":
        return {"connect_args": {"connect_timeout": CONNECT_TIMEOUT_S}, "pool_pre_ping": True}
    if backend == "mysql":
        return {"connect_args": {"connect_timeout": CONNECT_TIMEOUT_S}, "pool_pre_ping": True}
    return {}


def _hide_password(url: URL) -> str:
    return url.render_as_string(hide_password=True)


def open_storage(url: str | None, work_dir: str) -> optuna.storages.RDBStorage:
    """The study's storage for ``--storage URL`` (None: an SQLite file in ``work_dir``), connected and checked.

    Raises ConfigError naming ``--storage`` for a malformed URL, an unknown database, a missing driver or a
    server that does not answer (or refuses the login).
    """
    if url is None:
        os.makedirs(work_dir, exist_ok=True)
        url = default_url(work_dir)
    parsed = _parse(url)
    try:
        parsed.get_dialect()
    except sa_exc.NoSuchModuleError:
        backend = parsed.get_backend_name()
        if "+" in parsed.drivername and backend in _DRIVERS:
            known = ", ".join(f"{backend}+{name}" for name, _ in _DRIVERS[backend])
            raise ConfigError(f"'{parsed.get_driver_name()}' in '{_hide_password(parsed)}' is not a driver "
                              f"SQLAlchemy has; use e.g. {known}, or {backend}:// alone", KEY) from None
        raise ConfigError(f"'{parsed.drivername}' in '{_hide_password(parsed)}' is not a database SQLAlchemy knows; "
                          "use postgresql://, mysql:// or sqlite:///", KEY) from None
    parsed = _with_driver(parsed, _hide_password(parsed))
    if parsed.get_backend_name() == "sqlite" and parsed.database:
        folder = osp.dirname(osp.abspath(parsed.database))
        if not osp.isdir(folder):
            raise ConfigError(f"the folder of the SQLite file '{parsed.database}' does not exist; create it or "
                              "give another path", KEY)
    for attempt in range(SCHEMA_RACE_RETRIES + 1):
        try:
            with warnings.catch_warnings():  # the heartbeat and its retry are "experimental" in Optuna since 2.8
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY)
                return optuna.storages.RDBStorage(
                    parsed.render_as_string(hide_password=False), engine_kwargs=_engine_kwargs(parsed),
                    heartbeat_interval=HEARTBEAT_INTERVAL_S, grace_period=GRACE_PERIOD_S,
                    heartbeat_stale_trial_callback=retry)
        except (sa_exc.IntegrityError, sa_exc.ProgrammingError) as error:
            # Workers started together on a new database all create Optuna's tables; PostgreSQL lets one
            # win and fails the others with a duplicate type/relation. The tables then exist: try again.
            if attempt == SCHEMA_RACE_RETRIES or not _lost_schema_race(error):
                raise ConfigError(f"cannot open '{_hide_password(parsed)}': {_first_line(error)}", KEY) from None
            time.sleep(0.5 * (attempt + 1))
        except (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.DatabaseError) as error:
            reason = _first_line(error)
            raise ConfigError(f"cannot connect to '{_hide_password(parsed)}': {reason}; start the database server "
                              "(tools/dev/start_postgres.sh starts one on this machine) or fix the host, port, user, "
                              "password or database in the URL", KEY) from None
    raise AssertionError("unreachable")  # the loop returns or raises


def _first_line(error: Exception) -> str:
    return str(getattr(error, "orig", error) or error).strip().splitlines()[0]


def _lost_schema_race(error: Exception) -> bool:
    """Whether ``error`` is another process having created the same table or type a moment earlier."""
    text = str(getattr(error, "orig", error)).lower()
    return "already exists" in text or ("duplicate key" in text and "pg_type" in text)
