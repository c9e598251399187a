// Groups and their members, and the organization's members with their roles.

import * as api from './api.js';
import {
  busy, confirmAction, dialog, empty, enumLabel, errorBox, errorText, field, fill, h, isAdmin, notice,
  pageTitle, section, select, session, table,
} from './ui.js';

function orgMembers() {
  return api.listAll('OrganizationService', 'ListMembers', { organizationId: session.current.orgId }, 'members');
}

export async function render(main) {
  const list = h('div');
  const admin = isAdmin();
  const create = admin ? h('button', { type: 'button', class: 'primary', onclick: () => createGroup(load) }, 'Create group') : null;
  fill(
    main,
    h('div', { class: 'page-head' }, pageTitle('Groups'), create),
    h('p', {}, h('a', { href: '#/members' }, 'Organization members and roles')),
    list,
  );
  async function load() {
    try {
      const groups = await api.listAll('GroupService', 'ListGroups', {}, 'groups');
      if (!groups.length) {
        fill(list, empty('No groups.'));
        return;
      }
      fill(list, table('Groups', ['Name', 'Description', 'Members', 'Managed by'], groups.map((g) => h('tr', {},
        h('th', { scope: 'row' }, h('a', { href: `#/groups/${g.id}` }, g.name)),
        h('td', { 'data-label': 'Description' }, g.description || ''),
        h('td', { 'data-label': 'Members' }, String(g.memberCount || 0)),
        h('td', { 'data-label': 'Managed by' }, g.systemManaged ? 'corral' : 'admins')))));
    } catch (error) {
      fill(list, errorBox(error));
    }
  }
  await load();
  return null;
}

function createGroup(reload) {
  dialog('Create a group', (close) => {
    const name = h('input', { name: 'name', required: true, maxlength: 80, autocomplete: 'off' });
    const description = h('input', { name: 'description', maxlength: 200 });
    const out = h('div', { class: 'out' });
    const form = h('form', {}, field('Name', name), field('Description', description),
      h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, 'Create')), out);
    form.addEventListener('submit', (event) => {
      event.preventDefault();
      busy(form, out, async () => {
        await api.call('GroupService', 'CreateGroup', {
          organizationId: session.current.orgId,
          name: name.value.trim(),
          description: description.value.trim(),
        });
        notice(`Group ${name.value.trim()} created.`);
        close();
        reload();
      });
    });
    return form;
  });
}

export async function renderGroup(main, id) {
  let group;
  try {
    ({ group } = await api.call('GroupService', 'GetGroup', { id }));
  } catch (error) {
    fill(main, pageTitle('Group'), errorBox(error));
    return null;
  }
  const admin = isAdmin();
  const members = h('div');
  const addArea = h('div');
  const remove = admin && !group.systemManaged ? h('button', {
    type: 'button',
    class: 'danger',
    onclick: async () => {
      if (!(await confirmAction(`Delete ${group.name}?`, 'Its runner policies go with it.'))) return;
      try {
        await api.call('GroupService', 'DeleteGroup', { groupId: group.id });
        notice(`Group ${group.name} deleted.`);
        location.hash = '#/groups';
      } catch (error) {
        notice(errorText(error), 'error');
      }
    },
  }, 'Delete group') : null;
  fill(
    main,
    h('p', { class: 'crumbs' }, h('a', { href: '#/groups' }, 'Groups'), ' / '),
    h('div', { class: 'page-head' }, pageTitle(group.name), remove),
    group.description ? h('p', {}, group.description) : null,
    group.systemManaged ? h('p', { class: 'muted' }, 'corral keeps this group\u2019s members itself.') : null,
    section('Members', null, members, addArea),
  );
  const load = async () => {
    try {
      const list = await api.listAll('GroupService', 'ListMemberships', { groupId: group.id }, 'members');
      if (!list.length) {
        fill(members, empty('No members.'));
        return;
      }
      fill(members, table('Members', ['Name', ''], list.map((m) => h('tr', {},
        h('th', { scope: 'row' }, m.name || m.subject?.id),
        h('td', {}, admin && !group.systemManaged ? h('button', {
          type: 'button',
          class: 'small danger',
          onclick: async () => {
            try {
              await api.call('GroupService', 'DeleteMembership', { membershipId: m.id });
              notice(`${m.name || 'Member'} removed.`);
              load();
            } catch (error) {
              notice(errorText(error), 'error');
            }
          },
        }, 'Remove') : null)))));
    } catch (error) {
      fill(members, errorBox(error));
    }
  };
  await load();
  if (admin && !group.systemManaged) {
    try {
      const people = await orgMembers();
      const who = select('userId', people.map((p) => [p.userId, p.fullName ? `${p.fullName} <${p.email}>` : p.email]), people[0]?.userId);
      const out = h('div', { class: 'out' });
      const form = h('form', { class: 'inline-form' }, field('Person', who), h('button', { type: 'submit' }, 'Add member'), out);
      form.addEventListener('submit', (event) => {
        event.preventDefault();
        busy(form, out, async () => {
          await api.call('GroupService', 'CreateMembership', { groupId: group.id, subject: { id: who.value, principal: 'PRINCIPAL_USER' } });
          notice('Member added.');
          load();
        });
      });
      fill(addArea, form);
    } catch (error) {
      fill(addArea, errorBox(error));
    }
  }
  return null;
}

export async function renderMembers(main) {
  const list = h('div');
  fill(main, h('p', { class: 'crumbs' }, h('a', { href: '#/groups' }, 'Groups'), ' / '), pageTitle('Organization members'), list);
  const admin = isAdmin();
  try {
    const people = await orgMembers();
    fill(list, table('Organization members', ['Name', 'Email', 'Role', 'Status'], people.map((p) => {
      const role = select('role', [['ORGANIZATION_ROLE_ADMIN', 'admin'], ['ORGANIZATION_ROLE_MEMBER', 'member']], p.role);
      role.setAttribute('aria-label', `Role of ${p.email}`);
      role.disabled = !admin || p.userId === session.current.userId;
      role.addEventListener('change', async () => {
        try {
          await api.call('OrganizationService', 'SetRole', { organizationId: session.current.orgId, userId: p.userId, role: role.value });
          notice(`${p.email} is now ${enumLabel(role.value, 'ORGANIZATION_ROLE_')}.`);
        } catch (error) {
          role.value = p.role;
          notice(errorText(error), 'error');
        }
      });
      return h('tr', {},
        h('th', { scope: 'row' }, p.fullName || p.email),
        h('td', { 'data-label': 'Email' }, p.email),
        h('td', { 'data-label': 'Role' }, role),
        h('td', { 'data-label': 'Status' }, enumLabel(p.status, 'USER_STATUS_')));
    })));
  } catch (error) {
    fill(list, errorBox(error));
  }
  return null;
}
