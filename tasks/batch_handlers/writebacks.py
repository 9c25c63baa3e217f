"""The batch handler of Zoho write-backs (kind `zoho_writebacks`): one Zoho update per module
for up to 100 records; a newer write-back of a record replaces the one waiting."""

from __future__ import annotations

from schemas.errors import ValidationFailed
from schemas.links import WrittenBack
from tasks.batch_handlers.elements import WriteBackElement
from workers.batching import Element, Results, batch_handler
from workers.context import StageContext

WRITEBACKS = "zoho_writebacks"


@batch_handler(WRITEBACKS, xero=False, latest_wins=True)
def write_back(ctx: StageContext, elements: list[Element]) -> Results:
    """One Zoho update per module for up to 100 records; per record, done or Zoho's error."""
    results: Results = {}
    modules = {str(_payload(e).module) for e in elements}
    for module in sorted(modules):
        group = [e for e in elements if _payload(e).module == module]
        answers = ctx.zoho.update_each(module, [_payload(e).update for e in group])
        for element, errors in zip(group, answers, strict=True):
            results[element.id] = (
                ValidationFailed("Zoho", [f"{module} {element.id}: {m}" for m in errors])
                if errors
                else WrittenBack(written=True)
            )
    return results


def _payload(element: Element) -> WriteBackElement:
    return WriteBackElement.model_validate(element.payload)
