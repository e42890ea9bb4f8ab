#!/usr/bin/env python3
"""Writes the workbook fixtures of tests/sheets.rs (run once; the files are
committed). Needs `pip install openpyxl odfpy`. No Rust crate in the tree
writes .xlsx/.ods, hence committed files."""
import datetime
import os

import openpyxl
from odf.opendocument import OpenDocumentSpreadsheet
from odf.table import Table, TableRow, TableCell
from odf.text import P

out = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures")

wb = openpyxl.Workbook()
ws = wb.active
ws.title = "Recipients"
ws.append(["phone", "name", "due_date", "amount"])
# Row 2: phone typed as a number (Excel drops the leading 0), a date cell.
ws.append([912345678, "An", datetime.date(2026, 12, 1), 150000])
# Row 3: phone as text keeps its 0; a date-time; a fractional number.
ws.append(["0987654321", "Bình", datetime.datetime(2026, 12, 1, 8, 30), 99.5])
# Row 4: a bad phone (same reason as in a CSV).
ws.append(["12345", "Cường", datetime.date(2026, 12, 2), 1])
# Row 5 is left blank; row 6 holds an error cell in `name`.
ws.append([])
ws.append(["0912000111", "#N/A", datetime.date(2026, 12, 3), 2])
# Row 7: a required value missing.
ws.append(["0912000222", "Dũng", None, 3])
ws["B6"].data_type = "e"
other = wb.create_sheet("Other")
other.append(["phone", "name", "due_date", "amount"])
other.append(["0911111111", "Em", "x", 4])
wb.save(os.path.join(out, "recipients.xlsx"))

doc = OpenDocumentSpreadsheet()
table = Table(name="Danh sách")


def row(*cells):
    tr = TableRow()
    for c in cells:
        if isinstance(c, (int, float)):
            tc = TableCell(valuetype="float", value=c)
            tc.addElement(P(text=str(c)))
        elif isinstance(c, datetime.date):
            tc = TableCell(valuetype="date", datevalue=c.isoformat())
            tc.addElement(P(text=c.strftime("%d/%m/%Y")))
        else:
            tc = TableCell(valuetype="string")
            tc.addElement(P(text=c))
        tr.addElement(tc)
    table.addElement(tr)


row("phone", "name", "due_date", "amount")
row(912345601, "An", datetime.date(2026, 12, 1), 150000)
row("0912345602", "Bình", datetime.date(2026, 12, 2), 99.5)
row("+84 912 345 603", "Chi", datetime.date(2026, 12, 3), 7)
doc.spreadsheet.addElement(table)
doc.save(os.path.join(out, "recipients.ods"))
