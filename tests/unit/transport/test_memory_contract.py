"""The memory broker passes the same contract as the real Kafka (see tests/integration)."""

import pytest

from tests import transport_contract as contract

CHECKS = [
    contract.check_round_trip_keys_headers_partitioning,
    contract.check_commit_and_resume,
    contract.check_group_splits_partitions,
    contract.check_read_committed_hides_aborted,
    contract.check_commit_inside_revocation,
    contract.check_send_many_returns_the_last_offset,
    contract.check_topic_send_many_places_records_like_send,
    contract.check_offsets_commit_only_with_the_transaction,
    contract.check_newer_producer_fences_the_older,
]


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
async def test_memory_contract(check, memory_url: str, unique: str) -> None:  # type: ignore[no-untyped-def]
    await check(memory_url, unique)
