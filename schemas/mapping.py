"""Pure Zoho -> Xero mapping: no I/O, every decision explained, money exact.

The one promise users care most about lives here: Xero's Total equals Zoho's Grand_Total. Xero
rounds tax per line to cents; where Zoho's figure for a line differs, the line's TaxAmount is sent
(Xero accepts an overridden tax) or, where the connection asks for it, a rounding line absorbs the
difference. Anything still different is a TotalMismatch naming both figures.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from typing import Any

from schemas.connection import Connection
from schemas.errors import InvalidRecord, TotalMismatch
from schemas.money import CENT, HUNDRED, ZERO, exclusive_tax, inclusive_tax, round_money
from schemas.wire import dumps
from schemas.xero import (
    XeroAddress,
    XeroContactIn,
    XeroContactRef,
    XeroInvoiceIn,
    XeroItemDetails,
    XeroItemIn,
    XeroLineItemIn,
    XeroPhone,
    XeroTracking,
)
from schemas.zoho import (
    ZohoAccount,
    ZohoContact,
    ZohoInventoryDocument,
    ZohoLineItem,
    ZohoProduct,
    ZohoSalesDocument,
)

MAX_UNIT_DECIMALS = 4  # Xero keeps 4-decimal UnitAmount and Quantity with unitdp=4
ITEM_CODE_MAX = 30
ITEM_NAME_MAX = 50


@dataclass(frozen=True)
class MappedInvoice:
    """A Xero invoice body plus what Xero will total and why it differs from a naive copy."""

    invoice: XeroInvoiceIn
    xero_total: Decimal
    decisions: list[str] = field(default_factory=list)
    lines: list[Line] = field(default_factory=list)  # with Xero's amounts: credit notes use them

    @property
    def content_version(self) -> str:
        """Fingerprint of the body: equal bodies give equal idempotency keys."""
        return fingerprint(self.invoice.body())


def fingerprint(body: dict[str, Any]) -> str:
    """A short hash of a Xero body (content version and idempotency keys of any document)."""
    return hashlib.sha256(dumps(body).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class LineRules:
    """What differs between sales and purchase lines: account, tax names, discount style."""

    account_code: str
    tax_types: dict[str, str]
    default_tax_type: str | None
    discount_as_rate: bool = False  # Xero purchase orders take a percentage DiscountRate only
    account_codes: dict[str, str] = field(default_factory=dict)  # product code -> account
    tracking: tuple[XeroTracking, ...] = ()


def sales_rules(conn: Connection) -> LineRules:
    return LineRules(
        conn.sales_account_code,
        conn.tax_types,
        conn.default_tax_type,
        account_codes=conn.product_account_codes,
        tracking=tuple(XeroTracking(Name=k, Option=v) for k, v in sorted(conn.tracking.items())),
    )


@dataclass(frozen=True)
class Line:
    """A mapped line plus the amounts Xero will compute for it."""

    body: XeroLineItemIn
    line_amount: Decimal
    tax: Decimal
    taxed: bool


def contact_from_account(account: ZohoAccount, person: ZohoContact | None) -> XeroContactIn:
    """A Xero customer for a Zoho account; ContactNumber = Zoho id is the durable match key."""
    address = XeroAddress(
        AddressLine1=account.billing_street,
        City=account.billing_city,
        Region=account.billing_state,
        PostalCode=account.billing_code,
        Country=account.billing_country,
    )
    return XeroContactIn(
        Name=account.name.strip()[:255],
        ContactNumber=account.id[:50],
        FirstName=person.first_name if person else None,
        LastName=person.last_name if person else None,
        EmailAddress=person.email if person else None,
        Addresses=addresses(address),
        Phones=[XeroPhone(PhoneNumber=account.phone)] if account.phone else None,
    )


def addresses(address: XeroAddress) -> list[XeroAddress] | None:
    """The contact's address list, or None when Zoho has no address at all."""
    return [address] if any(v for k, v in address.body().items() if k != "AddressType") else None


def item_from_product(
    product: ZohoProduct, conn: Connection, purchase_price: Decimal | None = None
) -> XeroItemIn:
    """A Xero item for a Zoho product, keyed by Product_Code.

    Zoho products carry no cost price, so an item first met on a purchase order takes the price
    it is bought at there (`purchase_price`) and the connection's purchase account.
    """
    code = product_code(product)
    purchased = purchase_price is not None
    return XeroItemIn(
        Code=code,
        Name=product.name.strip()[:ITEM_NAME_MAX],
        Description=product.description or product.name,
        SalesDetails=XeroItemDetails(
            UnitPrice=product.unit_price, AccountCode=conn.sales_account_code
        ),
        IsPurchased=True if purchased else None,
        PurchaseDetails=(
            XeroItemDetails(UnitPrice=purchase_price, AccountCode=conn.purchase_account_code)
            if purchased
            else None
        ),
    )


def product_code(product: ZohoProduct) -> str:
    """The Xero item code of a product, or an error naming the product and field."""
    record = f"Products {product.id} ({product.name})"
    code = (product.code or "").strip()
    if not code:
        raise InvalidRecord(
            record,
            "Product_Code",
            "is empty; Xero items need a code",
            hint=f"Give product '{product.name}' a Product_Code in Zoho, then replay.",
        )
    if len(code) > ITEM_CODE_MAX:
        raise InvalidRecord(
            record, "Product_Code", f"'{code}' is over Xero's {ITEM_CODE_MAX} characters"
        )
    return code


def map_invoice(
    module: str,
    doc: ZohoSalesDocument,
    contact_id: str,
    products: dict[str, ZohoProduct],
    conn: Connection,
    tax_rates: dict[str, Decimal],
) -> MappedInvoice:
    """Map a Zoho quote/sales order/invoice to a Xero ACCREC invoice whose Total = Grand_Total.

    `tax_rates` is the Xero organisation's TaxType -> rate (percent); Zoho's percentages are
    checked against it so a mis-mapped tax is an error here, not a wrong invoice in Xero.
    """
    record = f"{module} {doc.id}" + (f" ({doc.number})" if doc.number else "")
    # quotes and sales orders have no document date: Xero's invoice is dated the day the
    # document reached its trigger stage (its last modification)
    issued = doc.document_date or (doc.modified_time.date() if doc.modified_time else None)
    if issued is None:
        raise InvalidRecord(record, _date_field(module), "is empty; Xero needs an invoice date")
    if conn.numbering == "zoho" and not doc.number:
        raise InvalidRecord(
            record, _number_field(module), "is empty, but this connection keeps Zoho's numbers"
        )
    decisions: list[str] = []
    rules = sales_rules(conn)
    lines = [
        map_line(record, index, line, products, conn, rules, tax_rates, decisions)
        for index, line in enumerate(doc.items)
    ]
    lines += record_level_lines(record, doc, conn, rules, tax_rates)
    lines = reconcile_total(record, doc.grand_total, lines, conn, decisions)
    invoice = XeroInvoiceIn(
        Contact=XeroContactRef(ContactID=contact_id),
        LineItems=[line.body for line in lines],
        Date=issued,
        DueDate=doc.due_date or issued + timedelta(days=conn.payment_terms_days),
        LineAmountTypes=conn.line_amount_types,
        InvoiceNumber=doc.number if conn.numbering == "zoho" else None,
        Reference=_reference(doc, conn),
        CurrencyCode=doc.currency,
        CurrencyRate=currency_rate(doc, conn),
        BrandingThemeID=conn.branding_theme_id,
        Status=conn.invoice_status,
    )
    return MappedInvoice(invoice, xero_total(lines, conn), decisions, lines)


def currency_rate(doc: ZohoInventoryDocument, conn: Connection) -> Decimal | None:
    """Zoho's rate for a foreign-currency document; None lets Xero use its own day rate."""
    foreign = doc.currency and doc.currency != conn.xero_base_currency
    return doc.exchange_rate if foreign and doc.exchange_rate else None


def _reference(doc: ZohoSalesDocument, conn: Connection) -> str:
    """Reference carries the Zoho number (or, when Xero keeps that number, the subject)."""
    if conn.numbering == "zoho":
        return (doc.subject or doc.number or doc.id)[:255]
    return (doc.number or doc.subject or doc.id)[:255]


def _number_field(module: str) -> str:
    return {"Quotes": "Quote_Number", "Sales_Orders": "SO_Number"}.get(module, "Invoice_Number")


def _date_field(module: str) -> str:
    return {"Quotes": "Quote_Date", "Sales_Orders": "SO_Date"}.get(module, "Invoice_Date")


def map_line(
    record: str,
    index: int,
    line: ZohoLineItem,
    products: dict[str, ZohoProduct],
    conn: Connection,
    rules: LineRules,
    tax_rates: dict[str, Decimal],
    decisions: list[str],
) -> Line:
    """One Zoho line as a Xero line: amounts exact, tax checked, Zoho's tax kept if it differs."""
    where = f"line {index + 1}"
    product = products.get(line.product.id)
    if product is None:
        raise InvalidRecord(record, f"{where}.Product_Name", f"product {line.product.id} not found")
    for name, value in (("Quantity", line.quantity), ("List_Price", line.list_price)):
        if _decimals(value) > MAX_UNIT_DECIMALS:
            raise InvalidRecord(
                record, f"{where}.{name}", f"{value} has more than {MAX_UNIT_DECIMALS} decimals"
            )
    line_amount = round_money(line.quantity * line.list_price - line.discount)
    tax_type, rate = _line_tax_type(record, where, line, conn, rules, tax_rates)
    zoho_tax = sum((t.value for t in line.line_taxes), ZERO)
    override: Decimal | None = None
    if conn.line_amount_types == "Inclusive":
        if zoho_tax:
            raise InvalidRecord(
                record,
                f"{where}.Tax",
                f"Zoho added tax {zoho_tax} on top, but this connection is tax-inclusive",
                hint="Set line_amount_types = Exclusive for this connection, or remove the "
                "Zoho line tax and use tax-inclusive prices.",
            )
        tax = inclusive_tax(line_amount, rate)
    else:
        tax = exclusive_tax(line_amount, rate)
        if line.line_taxes and zoho_tax != tax and conn.rounding == "tax_override":
            decisions.append(f"{where}: TaxAmount {zoho_tax} sent (Xero would compute {tax})")
            override = tax = zoho_tax
    body = XeroLineItemIn(
        Description=(line.description or product.name)[:4000],
        Quantity=line.quantity,
        UnitAmount=line.list_price,
        ItemCode=product_code(product),
        AccountCode=rules.account_codes.get(product_code(product), rules.account_code),
        TaxType=tax_type,
        TaxAmount=override,
        DiscountAmount=None if rules.discount_as_rate else line.discount or None,
        DiscountRate=_discount_rate(record, where, line) if rules.discount_as_rate else None,
        Tracking=list(rules.tracking) or None,
    )
    return Line(body, line_amount, tax, taxed=rate != ZERO)


def _discount_rate(record: str, where: str, line: ZohoLineItem) -> Decimal | None:
    """Zoho's line discount (an amount) as the percentage Xero applies to the same cents."""
    if not line.discount:
        return None
    gross = line.quantity * line.list_price
    rate = (line.discount * HUNDRED / gross).quantize(CENT) if gross else ZERO
    if round_money(gross * rate / HUNDRED) != line.discount:
        raise InvalidRecord(
            record,
            f"{where}.Discount",
            f"{line.discount} off {round_money(gross)} is no whole-cent percentage, and Xero "
            "takes only a percentage discount on purchase lines",
            hint="Use a discount that is a percentage with at most 2 decimals, or lower the "
            "List_Price instead.",
        )
    return rate


def _line_tax_type(
    record: str,
    where: str,
    line: ZohoLineItem,
    conn: Connection,
    rules: LineRules,
    tax_rates: dict[str, Decimal],
) -> tuple[str, Decimal]:
    """Xero TaxType and rate for a line, checked against the organisation's TaxRates."""
    if not line.line_taxes:
        untaxed = conn.untaxed_tax_type
        if conn.line_amount_types == "Inclusive" and rules.default_tax_type:
            untaxed = rules.default_tax_type
        return untaxed, _xero_rate(record, f"{where}.Line_Tax", untaxed, tax_rates)
    zoho_name = " + ".join(t.name for t in line.line_taxes)
    zoho_rate = sum((t.percentage for t in line.line_taxes), ZERO)
    mapped = rules.tax_types.get(zoho_name)
    if mapped is None:
        raise InvalidRecord(
            record,
            f"{where}.Line_Tax",
            f"Zoho tax '{zoho_name}' has no Xero TaxType",
            hint=f"Add '{zoho_name}' to this connection's tax_types (e.g. \"{zoho_name}\": "
            '"OUTPUT").',
        )
    rate = _xero_rate(record, f"{where}.Line_Tax", mapped, tax_rates)
    if rate != zoho_rate:
        raise InvalidRecord(
            record,
            f"{where}.Line_Tax",
            f"Zoho tax '{zoho_name}' is {zoho_rate}% but Xero TaxType {mapped} is {rate}%",
            hint="Map the Zoho tax to a Xero TaxType with the same rate.",
        )
    return mapped, rate


def _xero_rate(
    record: str, field_name: str, tax_type: str, tax_rates: dict[str, Decimal]
) -> Decimal:
    if tax_type not in tax_rates:
        raise InvalidRecord(
            record,
            field_name,
            f"Xero organisation has no TaxType '{tax_type}'",
            hint="Fix the connection's tax mapping to one of the organisation's TaxRates.",
        )
    return tax_rates[tax_type]


def record_level_lines(
    record: str,
    doc: ZohoInventoryDocument,
    conn: Connection,
    rules: LineRules,
    tax_rates: dict[str, Decimal],
) -> list[Line]:
    """Zoho's record-level Discount and Adjustment become untaxed lines, as Zoho applies them."""
    rate = _xero_rate(record, "Discount", conn.untaxed_tax_type, tax_rates)
    if rate != ZERO:
        raise InvalidRecord(
            record, "Discount", f"untaxed_tax_type {conn.untaxed_tax_type} has rate {rate}%"
        )
    extra = [("Discount", -doc.discount), ("Adjustment", doc.adjustment)]
    return [
        _untaxed_line(label, amount, rules.account_code, conn) for label, amount in extra if amount
    ]


def _untaxed_line(label: str, amount: Decimal, account_code: str, conn: Connection) -> Line:
    body = XeroLineItemIn(
        Description=label,
        Quantity=Decimal(1),
        UnitAmount=amount,
        AccountCode=account_code,
        TaxType=conn.untaxed_tax_type,
    )
    return Line(body, round_money(amount), ZERO, taxed=False)


def xero_total(lines: list[Line], conn: Connection) -> Decimal:
    """What Xero will compute as the invoice Total for these lines."""
    if conn.line_amount_types == "Inclusive":
        return sum((line.line_amount for line in lines), ZERO)
    return sum((line.line_amount + line.tax for line in lines), ZERO)


def reconcile_total(
    record: str, zoho_total: Decimal, lines: list[Line], conn: Connection, decisions: list[str]
) -> list[Line]:
    """Make Xero's total equal Zoho's Grand_Total, or fail naming both figures."""
    difference = zoho_total - xero_total(lines, conn)
    if difference == ZERO:
        return lines
    if conn.rounding == "rounding_line" and abs(difference) <= conn.rounding_tolerance:
        decisions.append(f"rounding line {difference} to account {conn.rounding_account_code}")
        return [*lines, _untaxed_line("Rounding", difference, conn.rounding_account_code, conn)]
    taxed = [i for i, line in enumerate(lines) if line.taxed]
    if (
        conn.rounding == "tax_override"
        and conn.line_amount_types == "Exclusive"
        and taxed
        and abs(difference) <= CENT * len(taxed)
    ):
        # Zoho rounded tax on the total rather than per line: put the residue on the largest
        # taxed line's TaxAmount so the Xero total and total tax both equal Zoho's.
        index = max(taxed, key=lambda i: lines[i].line_amount)
        line = lines[index]
        tax = line.tax + difference
        decisions.append(f"line {index + 1}: TaxAmount {tax} carries Zoho's total-tax rounding")
        lines = list(lines)
        lines[index] = Line(
            line.body.model_copy(update={"TaxAmount": tax}), line.line_amount, tax, True
        )
        return lines
    raise TotalMismatch(record, zoho_total, xero_total(lines, conn))


def _decimals(value: Decimal) -> int:
    exponent = value.normalize().as_tuple().exponent
    return -exponent if isinstance(exponent, int) and exponent < 0 else 0
