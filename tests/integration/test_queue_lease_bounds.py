"""The lease a claim gives, whatever timeout a row names: the receivers'
role passes each row's timeout to hrflow_accept, and one it makes
absurd must not stop every worker's claims."""
from test_queue_layer import claim, pg, queue  # noqa: F401 (fixtures)


def test_a_huge_row_timeout_does_not_break_the_claim(queue):
    """A row whose timeout is int4's largest: the lease (timeout plus the
    kill grace) overflowed int4, the claim statement failed, and with it
    every claim of every worker for that program, for good.  The claim
    works, and the lease lasts HrflowTimeout's ceiling (86400 s, what the
    worker clamps the handler's timeout to) and the kill grace."""
    queue.sql("SELECT hrflow_accept(ARRAY['x'::bytea, 'x'::bytea], "
              "ARRAY['p:huge', 'p:sane']::text[], "
              "ARRAY['/bin/true', '/bin/true']::text[], "
              "ARRAY[2147483647, 30]::int4[], ARRAY[0, 0]::int8[])")
    ids = [int(x) for x in queue.sql(
        "SELECT id FROM hrflow_events ORDER BY id").split()]
    assert sorted(claim(queue)) == ids
    left = float(queue.sql("SELECT min(extract(epoch FROM lease - now())) "
                           "FROM hrflow_events WHERE timeout > 86400"))
    assert 86400 <= left < 86400 + 60, left
