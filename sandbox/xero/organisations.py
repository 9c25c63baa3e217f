"""Organisations: a country's tax rates and chart of accounts at creation, and the
account and tax-rate checks documents and items share."""

from __future__ import annotations

import secrets
import uuid
from decimal import Decimal

from sandbox.xero.base import SandboxBase
from sandbox.xero.common import (
    _SEED_NS,
    JSON,
    Tenant,
    _Country,
    _places,
    _TaxSeed,
    _utc,
    ms_date,
)

_COUNTRIES: dict[str, _Country] = {
    "AU": _Country(
        "AU",
        "AU",
        "AUSEASTERNSTANDARDTIME",
        (30, 6),
        "ACCRUALS",
        (
            _TaxSeed("GST on Income", "OUTPUT", "10", "OUTPUT", True, False),
            _TaxSeed("GST on Expenses", "INPUT", "10", "INPUT", False, True),
            _TaxSeed("GST Free Income", "EXEMPTOUTPUT", "0", "EXEMPTOUTPUT", True, False),
            _TaxSeed("BAS Excluded", "BASEXCLUDED", "0", "BASEXCLUDED", True, True),
        ),
        "OUTPUT",
        "INPUT",
        "BASEXCLUDED",
        "EXEMPTOUTPUT",
    ),
    "NZ": _Country(
        "NZ",
        "NZ",
        "NEWZEALANDSTANDARDTIME",
        (31, 3),
        "INVOICE",
        (
            _TaxSeed("GST on Income", "OUTPUT2", "15", "OUTPUT", True, False),
            _TaxSeed("GST on Expenses", "INPUT2", "15", "INPUT", False, True),
            _TaxSeed("No GST", "NONE", "0", "NONE", True, True),
            _TaxSeed("Zero Rated", "ZERORATED", "0", "EXEMPTOUTPUT", True, True),
        ),
        "OUTPUT2",
        "INPUT2",
        "NONE",
        "NONE",
    ),
    "GB": _Country(
        "GB",
        "UK",
        "GMTSTANDARDTIME",
        (31, 3),
        "ACCRUAL",
        (
            _TaxSeed("20% (VAT on Income)", "OUTPUT2", "20", "OUTPUT", True, False),
            _TaxSeed("20% (VAT on Expenses)", "INPUT2", "20", "INPUT", False, True),
            _TaxSeed("5% (VAT on Income)", "RROUTPUT", "5", "OUTPUT", True, False),
            _TaxSeed("Zero Rated Income", "ZERORATEDOUTPUT", "0", "ZERORATEDOUTPUT", True, False),
            _TaxSeed("No VAT", "NONE", "0", "NONE", True, True),
        ),
        "OUTPUT2",
        "INPUT2",
        "NONE",
        "NONE",
    ),
    "US": _Country(
        "US",
        "US",
        "EASTERNSTANDARDTIME",
        (31, 12),
        "ACCRUAL",
        (
            _TaxSeed("Sales Tax", "OUTPUT", "8.25", "OUTPUT", True, False),
            _TaxSeed("Tax Exempt", "NONE", "0", "NONE", True, True),
        ),
        "OUTPUT",
        "NONE",
        "NONE",
        "NONE",
    ),
}


_COUNTRY_ALIASES = {"UK": "GB"}


# (Code, Name, Type, Class, SystemAccount, which default tax: sales/purchases/no_tax/exempt)
_ACCOUNTS: tuple[tuple[str, str, str, str, str, str], ...] = (
    ("090", "Business Bank Account", "BANK", "ASSET", "", "no_tax"),
    ("200", "Sales", "REVENUE", "REVENUE", "", "sales"),
    ("260", "Rounding", "CURRLIAB", "LIABILITY", "ROUNDING", "no_tax"),
    ("270", "Interest Income", "OTHERINCOME", "REVENUE", "", "exempt"),
    ("300", "Purchases", "DIRECTCOSTS", "EXPENSE", "", "purchases"),
    ("310", "Cost of Goods Sold", "DIRECTCOSTS", "EXPENSE", "", "purchases"),
    ("400", "Advertising", "EXPENSE", "EXPENSE", "", "purchases"),
    ("610", "Accounts Receivable", "CURRENT", "ASSET", "DEBTORS", "no_tax"),
    ("800", "Accounts Payable", "CURRLIAB", "LIABILITY", "CREDITORS", "no_tax"),
    ("820", "Sales Tax", "CURRLIAB", "LIABILITY", "GST", "no_tax"),
)


# System accounts Xero refuses on invoice lines; ROUNDING is the one it allows.
_BLOCKED_SYSTEM_ACCOUNTS = {"DEBTORS", "CREDITORS", "GST", "RETAINEDEARNINGS", "HISTORICAL"}


CURRENCY_NAMES = {
    "AUD": "Australian Dollar",
    "NZD": "New Zealand Dollar",
    "GBP": "British Pound",
    "USD": "United States Dollar",
    "EUR": "Euro",
    "CAD": "Canadian Dollar",
    "JPY": "Japanese Yen",
    "SGD": "Singapore Dollar",
    "ZAR": "South African Rand",
    "INR": "Indian Rupee",
    "CHF": "Swiss Franc",
    "HKD": "Hong Kong Dollar",
}


class OrganisationsState(SandboxBase):
    """Organisations, their accounts and tax rates."""

    def add_tenant(
        self,
        tenant_id: str,
        name: str,
        country: str = "AU",
        base_currency: str = "AUD",
        currencies: list[str] | None = None,
    ) -> None:
        """Create an organisation with the tax rates and chart of accounts of its country."""
        code = _COUNTRY_ALIASES.get(country.upper(), country.upper())
        if code not in _COUNTRIES:
            raise ValueError(f"unsupported country {country!r}; use one of AU, NZ, UK, US")
        spec = _COUNTRIES[code]
        now = self.clock()
        taxes = {seed.tax_type: _tax_rate(seed) for seed in spec.taxes}
        defaults = {
            "sales": spec.sales,
            "purchases": spec.purchases,
            "no_tax": spec.no_tax,
            "exempt": spec.exempt,
        }
        accounts: dict[str, JSON] = {}
        for acc_code, acc_name, acc_type, acc_class, system, tax_kind in _ACCOUNTS:
            account: JSON = {
                "AccountID": str(uuid.uuid5(_SEED_NS, f"{tenant_id}/account/{acc_code}")),
                "Code": acc_code,
                "Name": acc_name,
                "Status": "ACTIVE",
                "Type": acc_type,
                "TaxType": defaults[tax_kind],
                "Class": acc_class,
                "SystemAccount": system,
                "EnablePaymentsToAccount": False,
                "ShowInExpenseClaims": acc_class == "EXPENSE",
                "BankAccountType": "BANK" if acc_type == "BANK" else "",
                "ReportingCode": "",
                "HasAttachments": False,
                "AddToWatchlist": False,
                "UpdatedDateUTC": ms_date(_utc(now)),
            }
            if acc_type == "BANK":
                account["BankAccountNumber"] = "0620000000000"
                account["CurrencyCode"] = base_currency
            accounts[acc_code] = account
        day, month = spec.year_end
        organisation: JSON = {
            "OrganisationID": tenant_id,
            "APIKey": secrets.token_hex(15).upper(),
            "Name": name,
            "LegalName": name,
            "PaysTax": True,
            "Version": spec.version,
            "OrganisationType": "COMPANY",
            "BaseCurrency": base_currency,
            "CountryCode": spec.code,
            "IsDemoCompany": False,
            "OrganisationStatus": "ACTIVE",
            "FinancialYearEndDay": day,
            "FinancialYearEndMonth": month,
            "SalesTaxBasis": spec.tax_basis,
            "SalesTaxPeriod": "QUARTERLY",
            "DefaultSalesTax": "Tax Exclusive",
            "DefaultPurchasesTax": "Tax Exclusive",
            "CreatedDateUTC": ms_date(_utc(now)),
            "Timezone": spec.timezone,
            "OrganisationEntityType": "COMPANY",
            "ShortCode": "!" + secrets.token_hex(3)[:5],
            "Class": "PREMIUM",
            "Edition": "BUSINESS",
            "LineOfBusiness": "Software",
            "Addresses": [],
            "Phones": [],
            "ExternalLinks": [],
            "PaymentTerms": {},
        }
        extra = [c for c in (currencies or []) if c != base_currency]
        try:
            uuid.UUID(tenant_id)
        except ValueError:
            raise ValueError(f"tenant id {tenant_id!r} is not a UUID, as Xero's are") from None
        with self.lock:
            self._tenants[tenant_id] = Tenant(
                tenant_id=tenant_id,
                name=name,
                country=spec,
                base_currency=base_currency,
                currencies=[base_currency, *extra],
                organisation=organisation,
                tax_rates=taxes,
                accounts=accounts,
                created_at=now,
            )

    def _account_for_line(self, t: Tenant, code: str) -> JSON | None:
        account = t.accounts.get(code)
        if account is None or account["Status"] != "ACTIVE" or account["Type"] == "BANK":
            return None
        if account["SystemAccount"] in _BLOCKED_SYSTEM_ACCOUNTS:
            return None
        return account

    def _tax_ok(self, t: Tenant, tax_type: str, doc_type: str) -> JSON | None:
        rate = t.tax_rates.get(tax_type)
        if rate is None or rate["Status"] != "ACTIVE":
            return None
        flag = "CanApplyToRevenue" if doc_type == "ACCREC" else "CanApplyToExpenses"
        return rate if rate[flag] else None


def _tax_rate(seed: _TaxSeed) -> JSON:
    rate = _places(Decimal(seed.rate), 4)
    return {
        "Name": seed.name,
        "TaxType": seed.tax_type,
        "TaxComponents": [
            {
                "Name": seed.name.split(" ")[0],
                "Rate": rate,
                "IsCompound": False,
                "IsNonRecoverable": False,
            },
        ],
        "Status": "ACTIVE",
        "ReportTaxType": seed.report,
        "CanApplyToAssets": seed.expenses,
        "CanApplyToEquity": seed.expenses,
        "CanApplyToExpenses": seed.expenses,
        "CanApplyToLiabilities": seed.expenses,
        "CanApplyToRevenue": seed.revenue,
        "DisplayTaxRate": rate,
        "EffectiveRate": rate,
    }
