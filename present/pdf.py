"""The invoice page as a PDF (`GET /i/{token}.pdf`, and the `invoice_sent` mail's
attachment), made with fpdf2.

fpdf2 is pure Python and `make install` installs it with everything else; the
font (Source Sans Pro, SIL Open Font License) comes from a pinned package too,
so nothing is asked of the system. It covers Latin, Greek and Cyrillic: a
character it cannot show (another script, say) is printed as "?" rather than
silently dropped, and an amount whose currency sign it cannot show is printed
with the ISO code instead (`1,250 KWD`).

Text is wrapped here, not by fpdf2's tables: a table row cannot span pages (a
credit-note reason of 45 lines made every PDF of its invoice fail), and its line
breaking measures each line again for every character it adds, so 500 long lines
took seconds. `_Layout` measures each word once from the font's own widths, breaks
a word wider than its column between characters, and lets any row flow onto the
next page, the table's heading repeated above it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import font_source_sans_pro
from fpdf import FPDF

from present import formats
from present.labels import how_paid, status_label

FONTS = Path(font_source_sans_pro.font_directory)
FAMILY = "SourceSans"
# Bidirectional marks some locales put around numbers: meaningless without shaping.
MARKS = dict.fromkeys(map(ord, "\u200e\u200f\u061c"), None)
GREY = (74, 79, 87)
INK = (27, 27, 27)
RULE = (214, 217, 222)
MARGIN = 18.0
# Room kept at the foot of every page for its footer (the invoice number, the page).
FOOT = 16.0
# A cell's space between its text and the next column.
GAP = 2.0
Color = tuple[int, int, int]


@cache
def _covered() -> frozenset[int]:
    pdf = _blank()
    return frozenset(pdf.fonts[FAMILY.lower()].cmap)  # type: ignore[union-attr]


class _Document(FPDF):
    footer_text = ""

    def footer(self) -> None:
        self.set_y(-12)
        self.set_font(FAMILY, "", 8.5)
        self.set_text_color(*GREY)
        self.cell(0, 5, f"{self.footer_text}Page {self.page_no()} of {{nb}}", align="C")


def _blank() -> _Document:
    pdf = _Document(format="A4", unit="mm")
    pdf.add_font(FAMILY, "", str(FONTS / "SourceSansPro-Regular.ttf"))
    pdf.add_font(FAMILY, "B", str(FONTS / "SourceSansPro-Semibold.ttf"))
    return pdf


def _text(value: object) -> str:
    """Text the font can show: anything else becomes "?"; tabs are spaces."""
    covered = _covered()
    text = str(value).translate(MARKS).replace("\t", " ").replace("\r\n", "\n")
    return "".join(c if ord(c) in covered or c == "\n" else "?" for c in text)


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


class _Layout:
    """Paragraphs and tables that wrap and flow onto as many pages as they need."""

    def __init__(self, pdf: _Document) -> None:
        self.pdf = pdf
        self.bottom = pdf.h - FOOT

    def font(self, size: float, bold: bool = False, color: Color = INK) -> None:
        self.pdf.set_font(FAMILY, "B" if bold else "", size)
        self.pdf.set_text_color(*color)

    def width(self, text: str) -> float:
        widths = self._widths()
        points = sum(widths[ord(c)] for c in text) * self.pdf.font_size_pt * 0.001
        return float(points / self.pdf.k)

    def _widths(self) -> Any:
        """The current font's advance widths by code point, in thousandths of its size."""
        return self.pdf.current_font.cw  # type: ignore[union-attr]

    def wrap(self, text: str, room: float) -> list[str]:
        """`text` in lines no wider than `room` (mm): at spaces, and a word wider than
        the room between its characters; a line break of the text is kept."""
        lines: list[str] = []
        space = self.width(" ")
        for paragraph in text.split("\n"):
            line, used = "", 0.0
            for word in paragraph.split(" "):
                if not word:
                    continue
                size = self.width(word)
                if line and used + space + size <= room:
                    line, used = f"{line} {word}", used + space + size
                    continue
                if line:
                    lines.append(line)
                while size > room:
                    piece = self._fitting(word, room)
                    lines.append(piece)
                    word = word[len(piece):]
                    size = self.width(word)
                line, used = word, size
            lines.append(line)  # an empty paragraph stays an empty line
        return lines

    def _fitting(self, word: str, room: float) -> str:
        """The longest start of `word` that fits in `room` (at least one character)."""
        widths = self._widths()
        scale = self.pdf.font_size_pt * 0.001 / self.pdf.k
        used = 0.0
        for end, char in enumerate(word):
            used += widths[ord(char)] * scale
            if used > room:
                return word[:max(end, 1)]
        return word

    def room_for(self, height: float) -> bool:
        return self.pdf.get_y() + height <= self.bottom

    def paragraph(self, text: str, size: float = 10.5, *, bold: bool = False,
                  color: Color = INK, height: float = 6, link: str | None = None) -> None:
        self.font(size, bold, color)
        for line in self.wrap(_text(text), self.pdf.epw):
            if not self.room_for(height):
                self.pdf.add_page()
            self.pdf.cell(self.pdf.epw, height, line, link=link or "")
            self.pdf.ln(height)

    def space(self, height: float) -> None:
        if self.room_for(height):
            self.pdf.ln(height)

    def table(self, heading: Sequence[str], rows: Sequence[Sequence[str]],
              shares: Sequence[float], *, bold_last: bool = False,
              title: str | None = None) -> None:
        """Under `title`, columns of `shares` of the page's width, the last aligned right.
        A row that fits on a page is never split; a taller one flows on line by line, the
        heading repeated on every page it reaches."""
        widths = [self.pdf.epw * share for share in shares]
        line = 5.2
        page_room = self.bottom - MARGIN - 3 * line

        def head() -> None:
            self.font(9.5, True, GREY)
            self._row([[c] for c in heading], widths, line)

        def fresh_page() -> None:
            self.pdf.add_page()
            head()

        def laid_out(index: int, row: Sequence[str]) -> tuple[list[list[str]], float, bool]:
            bold = bold_last and index == len(rows) - 1
            self.font(10.5, bold)
            cells = [self.wrap(_text(value), width - GAP) for value, width in zip(row, widths)]
            return cells, max(len(c) for c in cells) * line + 2, bold

        first = laid_out(0, rows[0])[1] if rows else 0.0
        # A title and a heading are never left alone at a page's foot.
        if not self.room_for(min(first, page_room) + 3 * line + (14 if title else 0)):
            self.pdf.add_page()
        if title:
            self.space(6)
            self.paragraph(title, 13, bold=True, height=8)
        head()
        for index, row in enumerate(rows):
            cells, tall, bold = laid_out(index, row)
            if not self.room_for(tall) and tall <= page_room:
                fresh_page()
                self.font(10.5, bold)
            self._row(cells, widths, line, on_break=fresh_page, bold=bold)

    def _row(self, cells: list[list[str]], widths: list[float], line: float, *,
             on_break: Callable[[], None] | None = None, bold: bool = False) -> None:
        pdf = self.pdf
        pdf.ln(1)
        for i in range(max(len(c) for c in cells)):
            if on_break is not None and not self.room_for(line + 1):
                on_break()
                self.font(10.5, bold)
                pdf.ln(1)
            x, last = pdf.l_margin, len(cells) - 1
            # The baseline where `cell` would put it; `text` writes a line at it without
            # the work `cell` does for markup and shaping, most of a long table's time.
            baseline = pdf.get_y() + line / 2 + 0.3 * pdf.font_size
            for column, (lines, width) in enumerate(zip(cells, widths)):
                if i < len(lines) and lines[i]:
                    left = x + width - pdf.c_margin - self.width(lines[i]) if column == last \
                        else x + pdf.c_margin
                    pdf.text(left, baseline, lines[i])
                x += width
            pdf.ln(line)
        pdf.ln(1)
        pdf.set_draw_color(*RULE)
        pdf.line(pdf.l_margin, pdf.get_y(), pdf.l_margin + pdf.epw, pdf.get_y())


def invoice_pdf(page: dict[str, Any], merchant: str, details: Sequence[str],
                locale: str | None) -> bytes:
    """The invoice of `reads.pages.invoice_page` as a PDF document, sold by `merchant`
    (with `details`: its address, tax number)."""
    inv = page["invoice"]
    w = _Writer(locale, inv["currency"])
    paid = inv["status"] == "paid"
    title = f"Receipt for invoice {inv['number']}" if paid else f"Invoice {inv['number']}"

    pdf = _blank()
    pdf.set_title(_text(title))
    pdf.set_author(_text(merchant))
    pdf.set_creator("settle")
    pdf.set_lang("en")
    pdf.set_auto_page_break(False)
    pdf.set_margins(MARGIN, MARGIN, MARGIN)
    pdf.footer_text = f"{_text(title)[:80]}  ·  "
    pdf.add_page()
    out = _Layout(pdf)

    out.paragraph(merchant, 13, bold=True, height=7)
    for detail in details:
        out.paragraph(detail, 9.5, color=GREY, height=4.8)
    out.space(4)
    out.paragraph(title, 20, bold=True, height=10)
    facts = [f"Status: {status_label(inv['status'])}"]
    if paid and page.get("paid_at"):
        facts.append(f"Paid in full on {w.day(page['paid_at'])}")
    elif inv["due_date"] and inv["status"] not in ("void", "draft"):
        facts.append(f"Due {w.day(inv['due_date'])}")
    if page.get("sent_at"):
        facts.append(f"Issued {w.day(page['sent_at'])}")
    out.paragraph("   ·   ".join(facts), 11, color=GREY)
    customer = page["customer"]
    out.paragraph(f"For {customer['name'] or customer['email']}", 11, color=GREY)
    if inv["status"] == "void":
        out.paragraph("This invoice was withdrawn. Nothing is due.", 11, bold=True)
    out.space(5)

    rows = [(str(item["description"]), w.money(item["amount"])) for item in inv["lines"]] \
        or [(f"Invoice {inv['number']}", w.money(inv["total"]))]
    out.table(("Description", "Amount"), [*rows, ("Total", w.money(inv["total"]))],
              (0.72, 0.28), bold_last=True)
    _sums(out, inv, w)
    if page.get("open"):
        _how_to_pay(out, inv, w)
    if page["payments"]:
        out.table(("Date", "How", "Amount"),
                  [_payment_row(payment, w) for payment in page["payments"]], (0.22, 0.43, 0.35),
                  title="Payments")
    if page["credit_notes"]:
        out.table(("Date", "Reason", "Amount"),
                  [(w.day(note["created_at"]), str(note["reason"] or ""), w.money(note["amount"]))
                   for note in page["credit_notes"]], (0.22, 0.53, 0.25), title="Credit notes")
    return bytes(pdf.output())


def _sums(out: _Layout, inv: dict[str, Any], w: _Writer) -> None:
    sums: list[tuple[str, str]] = []
    if inv["amount_paid"]:
        sums.append(("Paid", w.money(inv["amount_paid"])))
    if inv["amount_credited"]:
        sums.append(("Paid from credit", w.money(inv["amount_credited"])))
    if inv["amount_credit_noted"]:
        sums.append(("Taken off by credit notes", w.money(inv["amount_credit_noted"])))
    if inv["status"] != "void":
        sums.append(("Remaining", w.money(inv["amount_remaining"])))
    out.space(3)
    pdf = out.pdf
    for label, value in sums:
        last = label == "Remaining"
        if not out.room_for(7):
            pdf.add_page()
        out.font(12 if last else 10.5, last)
        pdf.cell(pdf.epw * 0.72, 7, label)
        pdf.cell(pdf.epw * 0.28, 7, value, align="R")
        pdf.ln(7)


def _how_to_pay(out: _Layout, inv: dict[str, Any], w: _Writer) -> None:
    """What an open invoice's paper must say: what is owed, and where to pay it."""
    out.space(4)
    out.paragraph(f"To pay: {w.money(inv['amount_remaining'])}", 12, bold=True, height=7)
    out.paragraph("Pay online, or see what was paid and what remains, at:", 10.5, color=GREY)
    out.paragraph(inv["invoice_url"], 10.5, link=inv["invoice_url"])


def _payment_row(payment: dict[str, Any], w: _Writer) -> tuple[str, str, str]:
    """Date, how it was paid (and what became of it), amount: in a person's words."""
    how = how_paid(payment["source"], payment.get("method"))
    if payment["status"] == "processing":
        how += " (on its way)"
    elif payment["status"] == "failed":
        how += " (did not go through)"
    if payment.get("credited"):
        how += f"\n{w.money(payment['credited'])} of it went to your credit"
    if payment["refunded"]:
        how += f"\n{w.money(payment['refunded'])} of it was refunded"
    if payment.get("reversed"):
        how += f"\n{w.money(payment['reversed'])} of it was taken back by the bank"
    return w.day(payment["date"]), how, w.money(payment["amount"])
