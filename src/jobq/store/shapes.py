"""The shape of a job (``core/matching.py``), as both store families take it at submit: cached for
the shapes of jobs without requirements, which most jobs are of (by service, customer,
isolation, and whether the payload is one text line); building one costs more than the rest of
a submit."""

from __future__ import annotations

from jobq.core.matching import Shape, is_text_line, shape_of
from jobq.core.model import Job, JobSpec

#: Most plain shapes kept; past it the cache starts again.
CACHED = 100_000

_plain_shapes: dict[tuple[str, str | None, str, bool], Shape] = {}


def shape_for(job: Job | JobSpec) -> Shape:
    """The job's shape; raises InvalidRequest for requirements that cannot be indexed."""
    if job.requires or job.must_not:
        return shape_of(job.service, job.requires, job.must_not, job.customer_id, job.isolation, job.payload)
    key = (job.service, job.customer_id, job.isolation, is_text_line(job.payload))
    shape = _plain_shapes.get(key)
    if shape is None:
        shape = shape_of(job.service, {}, {}, job.customer_id, job.isolation, job.payload)
        if len(_plain_shapes) > CACHED:
            _plain_shapes.clear()
        _plain_shapes[key] = shape
    return shape
