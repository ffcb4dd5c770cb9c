// Realtime: a portal's live connection, channel and subscription counts (this kernel), the
// change feed's state and the kernels in the mesh; and an inspector that joins a channel
// over the same WebSocket protocol clients use and shows what arrives.
// A plugin page (ABI 1.5): everything comes from the render context
// (docs/plugin-pages-and-commands.md). Path: plugins/realtime/live/<portal>.

let h, replace, notice, busy;

const LOG_LIMIT = 200;

export default {
  title: 'Realtime',
  async render({ api, params, navigate, ui, plugin, session }) {
    await ui.stylesheet(new URL('realtime.css', import.meta.url).href);
    ({ h, replace, notice, busy } = ui);
    const PAGE = `plugins/${plugin.name}/live`;
    const { portals } = await api.get('/v1/hub/portals');
    const picker = ui.portalPicker({ portals, plugin: 'realtime', page: 'live', selected: params[0] && decodeURIComponent(params[0]),
      onChoose: (name) => navigate(`${PAGE}/${encodeURIComponent(name)}`) });
    const intro = [h('h1', { id: 'page-title' }, 'Realtime'),
      h('p', {}, 'Live WebSocket connections of a portal on this kernel, and an inspector that joins a channel as the service role.')];
    if (!picker.chosen) return [...intro, picker.element];
    const portal = picker.chosen;
    const base = `/p/${encodeURIComponent(portal)}/realtime/v1`;
    const status = notice();

    // ---- counts, refreshed every 2 s while the page is shown ----
    const counts = h('div', { class: 'rt-counts', 'data-test': 'rt-counts', 'aria-live': 'polite' });
    const showCounts = async () => {
      try {
        const stats = await api.get(`${base}/api/stats`);
        replace(counts,
          ...[['Connections', stats.connections], ['Channels', stats.channels], ['Change subscriptions', stats.subscriptions],
            ['Change feed', stats.change_feed], ['Kernels in the mesh', stats.kernels.length + 1]]
            .map(([label, value]) => h('div', {}, h('strong', {}, String(value)), label)));
      } catch (error) {
        status.show(`Cannot read the counts: ${error.message}`, 'error');
      }
    };
    await showCounts();
    const timer = setInterval(() => { if (!counts.isConnected) clearInterval(timer); else showCounts(); }, 2000);

    // ---- the inspector ----
    const channelInput = h('input', { id: 'rt-channel', value: 'room-1', required: true, maxlength: 200 });
    const changesBox = h('input', { type: 'checkbox', id: 'rt-changes' });
    const log = h('ol', { class: 'rt-log', 'data-test': 'rt-log', 'aria-live': 'polite' });
    const joinButton = h('button', { type: 'submit' }, 'Join');
    const eventInput = h('input', { id: 'rt-event', value: 'message', maxlength: 200 });
    const payloadInput = h('input', { id: 'rt-payload', value: '{"text": "hello"}' });
    const sendButton = h('button', { type: 'submit', disabled: true }, 'Broadcast');
    let socket = null;
    let ref = 0;
    let topic = null;
    let heartbeat = null;
    const entry = (event, payload) => {
      log.prepend(h('li', {}, h('span', { class: 'rt-event' }, event), JSON.stringify(payload)));
      while (log.children.length > LOG_LIMIT) log.lastChild.remove();
    };
    const push = (event, payload, joinRef = '1') => {
      ref += 1;
      socket.send(JSON.stringify({ topic, event, payload, ref: String(ref), join_ref: joinRef }));
    };
    const leave = () => {
      if (heartbeat) clearInterval(heartbeat);
      if (socket) socket.close();
      socket = null;
      sendButton.disabled = true;
      joinButton.textContent = 'Join';
    };
    const join = () => {
      if (socket) return leave();
      const token = session && session.access_token;
      if (!token) return status.show('Sign in again: the session has no token.', 'error');
      const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
      topic = `realtime:${channelInput.value.trim()}`;
      socket = new WebSocket(`${scheme}//${location.host}${base}/websocket?vsn=1.0.0&apikey=${encodeURIComponent(token)}`);
      socket.addEventListener('open', () => {
        const config = { broadcast: { self: true }, presence: { enabled: true },
          postgres_changes: changesBox.checked ? [{ event: '*', schema: 'public' }] : [] };
        ref = 0;
        push('phx_join', { config }, null);
        heartbeat = setInterval(() => { ref += 1; socket && socket.send(JSON.stringify({ topic: 'phoenix', event: 'heartbeat', payload: {}, ref: String(ref) })); }, 25000);
        joinButton.textContent = 'Leave';
        sendButton.disabled = false;
      });
      socket.addEventListener('message', (message) => {
        try {
          const frame = JSON.parse(message.data);
          entry(frame.event, frame.payload);
        } catch { entry('binary', `${message.data.size || message.data.length} bytes`); }
      });
      socket.addEventListener('close', (closed) => {
        entry('closed', { code: closed.code, reason: closed.reason });
        leave();
        if (!counts.isConnected) return;
        showCounts();
      });
    };
    const joinForm = h('form', { class: 'rt-form', 'data-test': 'rt-join' },
      h('label', { for: 'rt-channel' }, 'Channel ', channelInput),
      h('label', { for: 'rt-changes', class: 'check' }, changesBox, ' Postgres changes (public)'), joinButton);
    joinForm.addEventListener('submit', (event) => { event.preventDefault(); status.clear(); join(); });
    const sendForm = h('form', { class: 'rt-form', 'data-test': 'rt-send' },
      h('label', { for: 'rt-event' }, 'Event ', eventInput), h('label', { for: 'rt-payload' }, 'Payload (JSON) ', payloadInput), sendButton);
    sendForm.addEventListener('submit', (event) => {
      event.preventDefault();
      status.clear();
      let payload;
      try { payload = JSON.parse(payloadInput.value); } catch { return status.show('The payload must be JSON.', 'error'); }
      busy(sendButton, async () => push('broadcast', { type: 'broadcast', event: eventInput.value, payload }));
    });
    return [...intro, picker.element, status.element, counts, h('h2', {}, 'Inspector'), joinForm, sendForm, log];
  },
};
