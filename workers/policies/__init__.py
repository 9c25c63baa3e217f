"""The policies every task runs (issue 15.1): one small class per concern, in its own module.

- time_limit: soft and hard limits; a soft limit is a transient error
- poison: deliveries of one attempt counted; a job that keeps killing its worker fails
- deferral: a rate limit reschedules the task without spending an attempt
- retry: transient errors are tried again with backoff
- dead_letter: a job that failed for good is kept with its payload and reported
- history: retries and failures in the record's history, and its failed outcome

task.py holds the app's task base (`PolicyTask`) and their order.
"""

from workers.policies.task import HOUSEKEEPING, POLICIES, PolicyTask

__all__ = ["HOUSEKEEPING", "POLICIES", "PolicyTask"]
