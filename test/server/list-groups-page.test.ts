// Goal: ListGroups pages through the groups in id order, each group once, the last page with no
// token, at most LIST_GROUPS_PAGE_MAX a page, and all of them at page_size 0 as before paging
// existed; a negative page_size is refused; method: listGroupsPage on ordered lists of ids.
import { describe, expect, it } from 'vitest';
import { ErrorCode } from '../../src/common/errors.js';
import { strata } from '../../src/generated/strata.js';
import { LIST_GROUPS_PAGE_MAX } from '../../src/common/request-limits.js';
import { listGroupsPage } from '../../src/server/groups-service.js';

const v1 = strata.v1;

const groups = (count: number) => Array.from({ length: count }, (_, index) => ({ groupId: `g-${String(index).padStart(5, '0')}` })).sort((a, b) => (a.groupId < b.groupId ? -1 : 1));

describe('listGroupsPage', () => {
  it('pages through every group once, in order, and ends with an empty token', () => {
    const all = groups(23);
    const seen: string[] = [];
    let token = '';
    let pages = 0;
    do {
      const page = listGroupsPage(all, 5, token);
      expect(page.groups.length).toBeLessThanOrEqual(5);
      seen.push(...page.groups.map((group) => group.groupId));
      token = page.nextPageToken;
      pages++;
    } while (token !== '');
    expect(seen).toEqual(all.map((group) => group.groupId));
    expect(pages).toBe(5);
  });

  it('answers every group at page_size 0, and none after the last id', () => {
    const all = groups(7);
    expect(listGroupsPage(all, 0, '')).toEqual({ groups: all, nextPageToken: '' });
    expect(listGroupsPage(all, 0, 'g-00003').groups.map((group) => group.groupId)).toEqual(['g-00004', 'g-00005', 'g-00006']);
    expect(listGroupsPage(all, 3, 'g-00006')).toEqual({ groups: [], nextPageToken: '' });
    expect(listGroupsPage([], 3, '')).toEqual({ groups: [], nextPageToken: '' });
  });

  it('goes on after a token whose group was deleted meanwhile', () => {
    const all = groups(6).filter((group) => group.groupId !== 'g-00002');
    expect(listGroupsPage(all, 2, 'g-00002').groups.map((group) => group.groupId)).toEqual(['g-00003', 'g-00004']);
  });

  it(`answers at most ${LIST_GROUPS_PAGE_MAX} a page, under 4 MiB at the longest ids, and refuses a negative page_size`, () => {
    const all = groups(LIST_GROUPS_PAGE_MAX + 5);
    const page = listGroupsPage(all, LIST_GROUPS_PAGE_MAX * 2, '');
    expect(page.groups).toHaveLength(LIST_GROUPS_PAGE_MAX);
    expect(page.nextPageToken).toBe(all[LIST_GROUPS_PAGE_MAX - 1]!.groupId);
    const longest = 'グ'.repeat(255); // 3 bytes each in UTF-8
    const widest = v1.ListGroupsResponse.encode(
      v1.ListGroupsResponse.create({
        groups: Array.from({ length: LIST_GROUPS_PAGE_MAX }, (_, index) => v1.GroupSummary.create({ groupId: `${longest.slice(6)}${String(index).padStart(6, '0')}`, state: 'reconciling', members: 2 ** 31 - 1 })),
        nextPageToken: longest,
      }),
    ).finish();
    expect(widest.length).toBeLessThan(4 * 1024 * 1024);
    expect(() => listGroupsPage(all, -1, '')).toThrow(expect.objectContaining({ code: ErrorCode.INVALID_ARGUMENT, message: 'page_size must be 0 (every group) or a positive number of groups, got -1' }));
  });
});
