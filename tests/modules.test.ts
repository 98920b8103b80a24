// lib/ stays readable: every module fits in one sitting (under 400 lines), and imports go one way — no cycle
// anywhere in lib/, not even through type-only imports.
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

const lib = join(import.meta.dirname, '../lib');
const modules = (readdirSync(lib, { recursive: true }) as string[])
  .filter((file) => file.endsWith('.ts') && !file.endsWith('.d.ts'))
  .map((file) => join(lib, file));

/** The lib/ modules `file` imports or re-exports (relative specifiers, type-only ones included). */
function importsOf(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  const specifiers = [...text.matchAll(/(?:from|import)\s*\(?\s*'(\.{1,2}\/[^']+)\.js'/g)].map((match) => match[1]);
  return [...new Set(specifiers.map((specifier) => resolve(dirname(file), `${specifier}.ts`)))];
}

/** Every import cycle's first file-to-file path found by a depth-first walk, or none. */
function findCycle(): string[] | undefined {
  const finished = new Set<string>();
  const walk = (file: string, path: string[]): string[] | undefined => {
    if (path.includes(file)) return [...path.slice(path.indexOf(file)), file];
    if (finished.has(file)) return undefined;
    for (const imported of importsOf(file)) {
      const cycle = walk(imported, [...path, file]);
      if (cycle) return cycle;
    }
    finished.add(file);
    return undefined;
  };
  for (const file of modules) {
    const cycle = walk(file, []);
    if (cycle) return cycle.map((step) => relative(lib, step));
  }
  return undefined;
}

describe('lib/', () => {
  it('has no import cycle', () => {
    expect(modules.length).toBeGreaterThan(40);
    expect(findCycle()).toBeUndefined();
  });

  it('has no module of 400 lines or more', () => {
    const long = modules
      .map((file) => ({ file: relative(lib, file), lines: readFileSync(file, 'utf8').split('\n').length }))
      .filter(({ lines }) => lines >= 400);
    expect(long).toEqual([]);
  });
});
