"""A burst of runs created at once through both API processes: the two workers share them, and
each run is executed exactly once, by one worker at a time."""

from concurrent.futures import ThreadPoolExecutor

import openai

from tests.distributed.conftest import Cluster
from tests.distributed.helpers import (
    LeaseSampler,
    check_event_log,
    eventually,
    scripted,
    slow_text,
)

RUNS = 40


def test_a_burst_of_runs_is_shared_by_both_workers_and_each_runs_once(running: Cluster) -> None:
    replies = [slow_text(8, 0.04, tag=f"r{n}-") for n in range(RUNS)]
    scripts = [scripted(running.upstream, reply) for reply in replies]
    clients = [running.client(running.a), running.client(running.b)]
    assistant_id = clients[0].beta.assistants.create(model="scripted-model").id

    def create(n: int) -> tuple[int, str, str]:
        """Create run ``n`` through API A (even) or B (odd): (n, thread id, run id)."""
        client: openai.OpenAI = clients[n % 2]
        run = client.beta.threads.create_and_run(
            assistant_id=assistant_id,
            thread={"messages": [{"role": "user", "content": scripts[n].say()}]},
        )
        return n, run.thread_id, run.id

    with LeaseSampler(running.sql) as sampler, ThreadPoolExecutor(10) as pool:
        created = list(pool.map(create, range(RUNS)))
        run_ids = [run_id for _, _, run_id in created]

        def all_finished() -> bool:
            rows = running.sql.rows("SELECT status FROM runs WHERE id = ANY(%s)", run_ids)
            return len(rows) == RUNS and all(status == "completed" for (status,) in rows)

        eventually(all_finished, 30, f"{RUNS} runs completed", interval=0.1)
    assert sampler.error is None, sampler.error

    for n, thread_id, run_id in created:
        other: openai.OpenAI = clients[(n + 1) % 2]  # read through the API it was not created on
        assert other.beta.threads.runs.retrieve(run_id, thread_id=thread_id).status == "completed"
        check_event_log(running.sql.events(run_id), "completed")
        steps = running.sql.rows(
            "SELECT data->>'type', data->>'status' FROM run_steps WHERE run_id = %s", run_id
        )
        assert [tuple(step) for step in steps] == [("message_creation", "completed")], run_id
        messages = running.sql.rows(
            "SELECT data->'content'->0->'text'->>'value' FROM messages WHERE run_id = %s", run_id
        )
        assert messages == [("".join(replies[n].text),)], run_id
    assert [len(script.requests) for script in scripts] == [1] * RUNS, "a model turn ran twice"
    check_owners(running, sampler, run_ids)


def check_owners(cluster: Cluster, sampler: LeaseSampler, run_ids: list[str]) -> None:
    """Every run was seen leased by exactly one owner, a worker; both workers ran some."""
    workers = {w.owner for w in cluster.workers}
    unseen = [run_id for run_id in run_ids if run_id not in sampler.owners]
    assert not unseen, f"{len(unseen)} runs never seen leased in {sampler.samples} samples"
    shared = {r: o for r, o in sampler.owners.items() if r in run_ids and len(o) != 1}
    assert not shared, f"runs that changed hands without a crash: {shared}"
    by_owner: dict[str, int] = {}
    for run_id in run_ids:
        (owner,) = sampler.owners[run_id]
        by_owner[owner] = by_owner.get(owner, 0) + 1
    assert set(by_owner) == workers, (by_owner, workers)
