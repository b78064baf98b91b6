/** A small RFC 4180 reader for the test: quoted fields may hold commas and quotes. */
export function parseCsv(text: string): Record<string, string>[] {
  const lines: string[][] = [];
  let field = '';
  let line: string[] = [];
  let quoted = false;
  for (let i = 0; i < text.length; i += 1) {
    const c = text[i];
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') {
        field += '"';
        i += 1;
      } else if (c === '"') quoted = false;
      else field += c;
    } else if (c === '"') quoted = true;
    else if (c === ',') {
      line.push(field);
      field = '';
    } else if (c === '\n') {
      line.push(field);
      lines.push(line);
      line = [];
      field = '';
    } else field += c;
  }
  const [header = [], ...rows] = lines;
  return rows.map((r) => Object.fromEntries(header.map((h, i) => [h, r[i] ?? ''])));
}
