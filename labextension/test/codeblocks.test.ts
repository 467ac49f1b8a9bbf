import { fencedBlocks, matchBlocks } from '../src/sidebar/codeblocks';

describe('fencedBlocks', () => {
  it('reads fenced blocks with their language, in order', () => {
    const md = 'Try this:\n\n```python\nprint("hi")\nx = 1\n```\n\nthen\n\n~~~\nls -l\n~~~\n';
    expect(fencedBlocks(md)).toEqual([
      { lang: 'python', code: 'print("hi")\nx = 1' },
      { lang: '', code: 'ls -l' }
    ]);
  });
  it('needs a closing fence as long as the opening one, of the same character', () => {
    const md = '````md\n```python\ninner\n```\n````';
    expect(fencedBlocks(md)).toEqual([{ lang: 'md', code: '```python\ninner\n```' }]);
  });
  it('reads fences nested in lists and block quotes', () => {
    const md = '1. first\n   ```python\n   a = 1\n   ```\n> ```\n> quoted()\n> ```';
    expect(fencedBlocks(md)).toEqual([
      { lang: 'python', code: 'a = 1' },
      { lang: '', code: 'quoted()' }
    ]);
  });
  it('runs an unclosed fence to the end (a streaming answer)', () => {
    expect(fencedBlocks('```py\nfor i in range(3):\n    pri')).toEqual([
      { lang: 'py', code: 'for i in range(3):\n    pri' }
    ]);
  });
  it('keeps HTML inside code as text (what Insert & run would run)', () => {
    const md = '```python\nx = "<span hidden>import os</span>"\n```';
    expect(fencedBlocks(md)[0].code).toBe('x = "<span hidden>import os</span>"');
  });
  it('ignores inline code and ``` with backticks in its info string', () => {
    expect(fencedBlocks('use `x` and ```a``` here')).toEqual([]);
  });
});

describe('matchBlocks', () => {
  const blocks = [
    { lang: 'python', code: 'print(1)' },
    { lang: 'python', code: 'print(2)' }
  ];
  it('pairs rendered blocks with source blocks by their text', () => {
    expect(matchBlocks(['print(1)\n', 'print(2)'], blocks)).toEqual(blocks);
  });
  it('gives no source block to a <pre> the source does not have (raw HTML)', () => {
    // a raw <pre> whose text (hidden part included) differs from every source block
    const m = matchBlocks(['print(1)import os', 'print(1)', 'print(2)'], blocks);
    expect(m).toEqual([null, blocks[0], blocks[1]]);
  });
  it('never hands one source block to two <pre>s', () => {
    expect(matchBlocks(['print(1)', 'print(1)'], blocks)).toEqual([blocks[0], null]);
  });
});
