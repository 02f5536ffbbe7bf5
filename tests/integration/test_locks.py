"""Named locks on a local root and on an S3 server (moto in server mode): one holder at a time, a dead
holder's lock is taken over after its lease, and a stale holder learns it lost the lock before writing."""

from __future__ import annotations

import json
import threading
import time

import pytest

from pipelines.core import locks
from pipelines.core.storage import LocalStorage, get_storage

pytestmark = pytest.mark.integration


@pytest.fixture(params=["local", "s3"])
def storage(request, tmp_path):
    if request.param == "local":
        return LocalStorage(tmp_path / "data")
    request.getfixturevalue("s3_root")
    return get_storage()


def test_one_holder_at_a_time_among_many_contenders(storage):
    inside, most, done = [0], [0], []
    guard = threading.Lock()

    def work(i: int) -> None:
        for _ in range(3):
            with locks.hold(storage, "promote-m", timeout=60) as lock:
                with guard:
                    inside[0] += 1
                    most[0] = max(most[0], inside[0])
                time.sleep(0.01)
                lock.check()
                with guard:
                    inside[0] -= 1
            done.append(i)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(done) == 18 and most[0] == 1


def test_a_lock_held_for_the_whole_wait_is_busy_exit_7(storage):
    with locks.hold(storage, "scores-m-2013-01-01"):
        with pytest.raises(locks.LockBusy) as exc:
            with locks.hold(storage, "scores-m-2013-01-01", timeout=0.3):
                pass
    assert exc.value.exit_code == 7
    with locks.hold(storage, "scores-m-2013-01-01", timeout=1):  # released: free again
        pass


def test_lock_names_are_validated():
    from pipelines.core.errors import ConfigError

    for bad in ("", "../x", "A", "x/y", "x" * 300):
        with pytest.raises(ConfigError):
            locks.lock_key(bad)


def test_an_expired_lease_is_taken_over_and_the_stale_holder_stops(s3_root, s3_client):
    storage = get_storage()
    stale = locks._ObjectLock(storage, "promote-m", lease=3)
    assert stale.try_acquire()
    with pytest.raises(locks.LockBusy):  # within the lease: nobody else gets it
        with locks.hold(storage, "promote-m", timeout=0.2, lease=30):
            pass
    time.sleep(3.1)  # the holder stalls past its lease
    with locks.hold(storage, "promote-m", timeout=10, lease=30) as fresh:
        fresh.check()
        with pytest.raises(locks.LockLost):
            stale.check()  # the stalled holder finds out before its next write
        stale.release()  # and its release does not remove the new holder's lock
        fresh.check()
        body = json.loads(s3_client.get_object(Bucket=storage.bucket, Key=fresh.key)["Body"].read())
        assert body["token"] == fresh.token
    assert not storage.exists(locks.lock_key("promote-m"))


def test_a_holder_renews_its_lease_past_half_time(s3_root):
    storage = get_storage()
    with locks.hold(storage, "promote-m", lease=3) as lock:
        first = lock.etag
        time.sleep(1.6)
        lock.check()  # past half the lease: renewed
        assert lock.etag != first
        time.sleep(1.6)  # past the first lease, within the renewed one
        with pytest.raises(locks.LockBusy):  # renewed, so still not expired for a contender
            with locks.hold(storage, "promote-m", timeout=0.05, lease=30):
                pass


def test_a_live_holder_keeps_its_lock_past_the_lease_by_heartbeat_and_a_dead_one_loses_it(s3_root):
    storage = get_storage()
    with locks.hold(storage, "promote-m", lease=1.5) as lock:
        time.sleep(2.5)  # no check() at all: the heartbeat renews
        with pytest.raises(locks.LockBusy):
            with locks.hold(storage, "promote-m", timeout=0.1, lease=30):
                pass
        lock.check()
    dead = locks._ObjectLock(storage, "promote-m", lease=1.5)
    assert dead.try_acquire()  # and no heartbeat: its process was killed
    time.sleep(1.6)
    with locks.hold(storage, "promote-m", timeout=10, lease=30):
        pass


def test_a_fenced_write_never_overwrites_what_another_writer_wrote_meanwhile(s3_root, tmp_path):
    from pipelines.core.errors import ConditionFailed

    storage = get_storage()
    key = "scores/m/ds=2013-01-01/part-00000.parquet"
    absent = storage.fence(key)
    assert absent == ""
    storage.write_bytes(key, b"newer run")  # another writer got there first
    with pytest.raises(ConditionFailed):
        storage.replace_if(key, absent, data=b"stale run")
    seen = storage.fence(key)
    storage.write_bytes(key, b"newest run")
    path = tmp_path / "stale"
    path.write_bytes(b"stale run")
    with pytest.raises(ConditionFailed):
        storage.replace_if(key, seen, path=str(path))
    assert storage.read_bytes(key) == b"newest run"
    storage.replace_if(key, storage.fence(key), path=str(path))  # nobody in between: written
    assert storage.read_bytes(key) == b"stale run"
    assert LocalStorage(tmp_path / "local").fence(key) is None  # a kernel lock is its own fence


def test_promotions_racing_on_an_s3_root_leave_one_champion(s3_root, tmp_path, monkeypatch):
    """Three gates check the champion, then move it; the registry answers slowly (0.3 s per lookup), so
    without a lock that works on S3 every one of them passes the check before any moves the alias."""
    from pipelines.core.config import load_project
    from pipelines.core.tracking import CHAMPION, alias_version, client
    from pipelines.training import gate

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    c = client()
    c.create_registered_model("flights_delay")
    for _ in range(3):
        c.create_model_version("flights_delay", "s3://bucket/model", run_id=None)
    project = load_project("flights_delay")
    real = gate._alias_version

    def slow_registry(*args):
        found = real(*args)
        time.sleep(0.3)
        return found

    monkeypatch.setattr(gate, "_alias_version", slow_registry)
    results: dict[str, str] = {}

    def promote(version: str) -> None:
        try:
            gate._move_aliases(client(), project, version, None, f"race {version}")
            results[version] = "won"
        except gate.ChampionChanged:
            results[version] = "lost"

    threads = [threading.Thread(target=promote, args=(v,)) for v in ("1", "2", "3")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [v for v, r in results.items() if r == "won"]
    assert len(winners) == 1 and len(results) == 3, results
    assert str(alias_version(c, "flights_delay", CHAMPION).version) == winners[0]
