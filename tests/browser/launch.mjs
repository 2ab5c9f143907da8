// Shared set-up for the browser tests: the app's own server on a free loopback port and headless
// Debian Chromium with WebGPU on SwiftShader (a CPU Vulkan driver), recording every request.
import { chromium } from 'playwright-core';
import { createServer } from '../../www/serve.mjs';

const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium';

/** Serves the app, opens `path` in a fresh page, and returns handles plus the requests seen. */
export async function openPage(path) {
  const server = createServer();
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const origin = `http://127.0.0.1:${server.address().port}`;
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless=new', '--no-sandbox', '--enable-unsafe-webgpu', '--enable-unsafe-swiftshader',
      '--use-angle=swiftshader', '--disable-background-networking', '--disable-component-update',
      '--no-first-run', '--disable-sync'],
  });
  const page = await browser.newPage({ viewport: { width: 1366, height: 768 } });
  const requests = [];
  // On the context, so that requests made by workers and the service worker are seen too.
  page.context().on('request', (r) => requests.push(r.url()));
  const close = async () => { await browser.close(); server.close(); };
  // Takes the server away (for offline checks): no new connection, and open ones are dropped.
  const stopServer = () => new Promise((r) => { server.close(r); server.closeAllConnections(); });
  return { origin, page, requests, close, stopServer, goto: () => page.goto(`${origin}${path}`) };
}

/**
 * Opens the bare harness page with the wasm package loaded as `window.cqa` and its device
 * initialised; resolves to the session plus the backend name (`webgpu` or `cpu`) and, on the
 * CPU, the engine's reason (e.g. WebGPU's own error).
 */
export async function openEngine() {
  const session = await openPage('/harness.html');
  session.page.on('console', (m) => { if (m.type() === 'error') console.log('[page]', m.text().slice(0, 500)); });
  await session.goto();
  const { backend, reason } = await session.page.evaluate(async () => {
    const m = await import('/pkg/cqa_studio.js');
    await m.default();
    window.cqa = m;
    return m.initDevice(true);
  });
  if (reason) console.log(`engine device: ${backend} (${reason})`);
  return { ...session, backend, reason };
}
