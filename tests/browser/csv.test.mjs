// The CSV export neutralises spreadsheet formulas that an imported benchmark could carry.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { csvCell, csvText } from '../../www/lib/csv.js';

test('formula-like text cells are neutralised, numbers are kept', () => {
  assert.equal(csvCell('=HYPERLINK("http://x","y")'), `"'=HYPERLINK(""http://x"",""y"")"`);
  assert.equal(csvCell('+1'), "'+1");
  assert.equal(csvCell('-2+3'), "'-2+3");
  assert.equal(csvCell('@SUM(A1)'), "'@SUM(A1)");
  assert.equal(csvCell('\tcmd'), "'\tcmd");
  assert.equal(csvCell(-0.5), '-0.5');
  assert.equal(csvCell(Number.NaN), '');
  assert.equal(csvCell(null), '');
  assert.equal(csvCell('lit-01'), 'lit-01');
  assert.equal(csvCell('a, b'), '"a, b"');
  assert.equal(csvText([['id', 'x'], ['=1', 2]]), "id,x\n'=1,2\n");
});
