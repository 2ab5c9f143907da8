// CSV for spreadsheets. Cells come from imported files (benchmark item ids, texts), so a cell that
// a spreadsheet would run as a formula is neutralised (OWASP's CSV injection advice).

/**
 * One CSV cell. Numbers are written as numbers; a text cell starting with =, +, -, @, tab or CR
 * is prefixed with an apostrophe, and quoted when it holds a quote, comma or newline.
 */
export function csvCell(v) {
  if (v === null || v === undefined) return '';
  if (typeof v === 'number') return Number.isFinite(v) ? String(v) : '';
  let s = String(v);
  if (/^[=+\-@\t\r]/.test(s)) s = `'${s}`;
  return /[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

/** Rows of cells as CSV text, one line per row. */
export const csvText = (rows) => `${rows.map((r) => r.map(csvCell).join(',')).join('\n')}\n`;
