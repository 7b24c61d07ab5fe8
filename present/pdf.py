"""The invoice page as a PDF (`GET /i/{token}.pdf`), made with fpdf2.

fpdf2 is pure Python and `make install` installs it with everything else; the
font (Source Sans Pro, SIL Open Font License) comes from a pinned package too,
so nothing is asked of the system. It covers Latin, Greek and Cyrillic: a
character it cannot show (another script, say) is printed as "?" rather than
silently dropped, and an amount whose currency sign it cannot show is printed
with the ISO code instead (`1,250 KWD`).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import font_source_sans_pro
from fpdf import FPDF
from fpdf.enums import XPos, YPos

from present import formats

FONTS = Path(font_source_sans_pro.font_directory)
FAMILY = "SourceSans"
# Bidirectional marks some locales put around numbers: meaningless without shaping.
MARKS = dict.fromkeys(map(ord, "\u200e\u200f\u061c"), None)
STATUS = {"sent": "Open", "partially_paid": "Partially paid", "overdue": "Overdue",
          "paid": "Paid", "void": "Void", "draft": "Not issued yet"}
METHODS = {"cash": "Cash", "check": "Check", "bank_transfer": "Bank transfer",
           "card_offline": "Card", "other": "Other"}
GREY = (74, 79, 87)
INK = (27, 27, 27)


@cache
def _covered() -> frozenset[int]:
    pdf = _blank()
    return frozenset(pdf.fonts[FAMILY.lower()].cmap)  # type: ignore[union-attr]


def _blank() -> FPDF:
    pdf = FPDF(format="A4", unit="mm")
    pdf.add_font(FAMILY, "", str(FONTS / "SourceSansPro-Regular.ttf"))
    pdf.add_font(FAMILY, "B", str(FONTS / "SourceSansPro-Semibold.ttf"))
    return pdf


def _text(value: object) -> str:
    """Text the font can show: anything else becomes "?"."""
    covered = _covered()
    text = str(value).translate(MARKS)
    return "".join(c if ord(c) in covered or c in "\n" else "?" for c in text)


class _Writer:
    def __init__(self, locale: str | None, currency: str) -> None:
        self.locale = locale
        self.currency = currency

    def money(self, amount: int, currency: str | None = None) -> str:
        currency = currency or self.currency
        text = formats.money(amount, currency, self.locale).translate(MARKS)
        covered = _covered()
        if all(ord(c) in covered for c in text):
            return text
        return _text(formats.money(amount, currency, self.locale, code=True))

    def day(self, value: Any) -> str:
        return _text(formats.day(value, self.locale))


def invoice_pdf(page: dict[str, Any], merchant: str, locale: str | None) -> bytes:
    """The invoice of `ledger.pages.invoice_page` as a PDF document."""
    inv = page["invoice"]
    w = _Writer(locale, inv["currency"])
    paid = inv["status"] == "paid"
    title = f"Receipt for invoice {inv['number']}" if paid else f"Invoice {inv['number']}"

    pdf = _blank()
    pdf.set_title(_text(title))
    pdf.set_author(_text(merchant))
    pdf.set_creator("settle")
    pdf.set_lang("en")
    pdf.set_auto_page_break(True, margin=18)
    pdf.set_margins(18, 18, 18)
    pdf.add_page()
    full = pdf.epw

    def line(text: str, size: float = 10.5, bold: bool = False, color: tuple[int, int, int] = INK,
             height: float = 6) -> None:
        pdf.set_font(FAMILY, "B" if bold else "", size)
        pdf.set_text_color(*color)
        pdf.multi_cell(full, height, _text(text), new_x=XPos.LMARGIN, new_y=YPos.NEXT)

    line(merchant, 13, bold=True, height=7)
    pdf.ln(4)
    line(title, 20, bold=True, height=10)
    facts = [f"Status: {STATUS.get(inv['status'], inv['status'])}"]
    if paid and page.get("paid_at"):
        facts.append(f"Paid in full on {w.day(page['paid_at'])}")
    elif inv["due_date"] and inv["status"] not in ("void", "draft"):
        facts.append(f"Due {w.day(inv['due_date'])}")
    if page.get("sent_at"):
        facts.append(f"Issued {w.day(page['sent_at'])}")
    line("   ·   ".join(facts), 11, color=GREY)
    customer = page["customer"]
    line(f"For {customer['name'] or customer['email']}", 11, color=GREY)
    if inv["status"] == "void":
        line("This invoice was withdrawn. Nothing is due.", 11, bold=True)
    pdf.ln(6)

    rows: list[tuple[str, ...]] = [
        (str(item["description"]), w.money(item["amount"])) for item in inv["lines"]] \
        or [(f"Invoice {inv['number']}", w.money(inv["total"]))]
    _table(pdf, ("Description", "Amount"), rows, (0.72, 0.28), total=("Total", w.money(inv["total"])))

    sums: list[tuple[str, str]] = []
    if inv["amount_paid"]:
        sums.append(("Paid", w.money(inv["amount_paid"])))
    if inv["amount_credited"]:
        sums.append(("Paid from credit", w.money(inv["amount_credited"])))
    if inv["amount_credit_noted"]:
        sums.append(("Taken off by credit notes", w.money(inv["amount_credit_noted"])))
    if inv["status"] != "void":
        sums.append(("Remaining", w.money(inv["amount_remaining"])))
    pdf.ln(4)
    for label, value in sums:
        last = label == "Remaining"
        pdf.set_font(FAMILY, "B" if last else "", 12 if last else 10.5)
        pdf.set_text_color(*INK)
        pdf.cell(full * 0.72, 7, _text(label))
        pdf.cell(full * 0.28, 7, value, align="R", new_x=XPos.LMARGIN, new_y=YPos.NEXT)

    if page["payments"]:
        pdf.ln(6)
        line("Payments", 13, bold=True, height=8)
        rows = []
        for payment in page["payments"]:
            how = "Paid online" if payment["source"] != "manual" \
                else METHODS.get(payment["method"] or "", "Other")
            if payment["status"] == "processing":
                how += " (on its way)"
            elif payment["status"] == "failed":
                how += " (did not go through)"
            amount = w.money(payment["amount"])
            if payment["refunded"]:
                amount += f"  ({w.money(payment['refunded'])} refunded)"
            rows.append((w.day(payment["date"]), how, amount))
        _table(pdf, ("Date", "How", "Amount"), rows, (0.25, 0.35, 0.40))

    if page["credit_notes"]:
        pdf.ln(6)
        line("Credit notes", 13, bold=True, height=8)
        rows = [(w.day(note["created_at"]), str(note["reason"] or ""), w.money(note["amount"]))
                for note in page["credit_notes"]]
        _table(pdf, ("Date", "Reason", "Amount"), rows, (0.25, 0.5, 0.25))

    return bytes(pdf.output())


def _table(pdf: FPDF, heading: tuple[str, ...], rows: list[tuple[str, ...]],
           widths: tuple[float, ...], total: tuple[str, str] | None = None) -> None:
    pdf.set_font(FAMILY, "", 10.5)
    pdf.set_text_color(*INK)
    pdf.set_draw_color(214, 217, 222)
    align = ["LEFT"] * (len(heading) - 1) + ["RIGHT"]
    with pdf.table(col_widths=widths, text_align=tuple(align), borders_layout="HORIZONTAL_LINES",
                   line_height=6.5, first_row_as_headings=True,
                   headings_style=_heading_style()) as table:
        for row in [heading, *rows]:
            cells = table.row()
            for value in row:
                cells.cell(_text(value))
        if total is not None:
            cells = table.row()
            pdf.set_font(FAMILY, "B", 10.5)
            cells.cell(_text(total[0]))
            cells.cell(_text(total[1]))
    pdf.set_font(FAMILY, "", 10.5)


def _heading_style() -> Any:
    from fpdf.fonts import FontFace

    return FontFace(family=FAMILY, emphasis="BOLD", color=GREY)
