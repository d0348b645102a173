// The landing page of the console: platform status, bilingual (zh-CN default), elderly-friendly mode.
const messages = {
  'zh-CN': {
    skip: '跳到主要内容',
    tagline: '开源城市数字底座：数字孪生 · 城市神经元 · 一网统管 · 一网通办 · 数据中枢 · 数字信任',
    switchLang: 'English',
    elderMode: '长辈模式',
    statusTitle: '平台状态',
    ready: '就绪',
    engine: '存储引擎',
    bus: '事件总线',
    version: '版本',
    linksTitle: '接口与运维',
    apiDocs: '接口文档（OpenAPI 3.1）',
    readiness: '就绪探针 /readyz',
    metrics: '监控指标 /metrics（Prometheus）',
    problems: '错误目录 /problems',
    console: '完整的运营控制台（地图、事件、指标）将随后续模块提供。',
    yes: '是',
    no: '否',
    unknown: '无法获取',
    title: '浦江 · 城市数字底座',
  },
  en: {
    skip: 'Skip to main content',
    tagline:
      'Open-source city digital foundation: digital twin · sensor network · unified operations · one-stop services · data hub · digital trust',
    switchLang: '中文',
    elderMode: 'Large text',
    statusTitle: 'Platform status',
    ready: 'Ready',
    engine: 'Storage engine',
    bus: 'Event bus',
    version: 'Version',
    linksTitle: 'API and operations',
    apiDocs: 'API reference (OpenAPI 3.1)',
    readiness: 'Readiness probe /readyz',
    metrics: 'Metrics /metrics (Prometheus)',
    problems: 'Error catalogue /problems',
    console: 'The full operations console (map, cases, indicators) arrives with the next modules.',
    yes: 'yes',
    no: 'no',
    unknown: 'unavailable',
    title: 'Pujiang · City digital foundation',
  },
};

let lang = localStorage.getItem('pujiang.lang') === 'en' ? 'en' : 'zh-CN';
let status = { ready: undefined, engine: undefined, bus: undefined, version: undefined };

function t(key) {
  return messages[lang][key] ?? key;
}

function render() {
  document.documentElement.lang = lang;
  document.title = t('title');
  for (const el of document.querySelectorAll('[data-i18n]')) el.textContent = t(el.dataset.i18n);
  document.getElementById('lang').setAttribute('aria-pressed', String(lang === 'en'));
  const show = (v) => (v === undefined ? t('unknown') : v);
  document.getElementById('ready').textContent =
    status.ready === undefined ? t('unknown') : status.ready ? t('yes') : t('no');
  document.getElementById('engine').textContent = show(status.engine);
  document.getElementById('bus').textContent = show(status.bus);
  document.getElementById('version').textContent = show(status.version);
}

async function load() {
  try {
    const [ready, info] = await Promise.all([
      fetch('/readyz').then((r) => r.json()),
      fetch('/api/v1/system').then((r) => r.json()),
    ]);
    status = { ready: ready.ready, engine: info.engine, bus: info.bus, version: info.version };
  } catch {
    status = { ready: undefined, engine: undefined, bus: undefined, version: undefined };
  }
  render();
}

document.getElementById('lang').addEventListener('click', () => {
  lang = lang === 'en' ? 'zh-CN' : 'en';
  localStorage.setItem('pujiang.lang', lang);
  render();
});
document.getElementById('elder').addEventListener('click', (e) => {
  const on = document.body.classList.toggle('elder');
  e.currentTarget.setAttribute('aria-pressed', String(on));
  localStorage.setItem('pujiang.elder', on ? '1' : '0');
});
if (localStorage.getItem('pujiang.elder') === '1') {
  document.body.classList.add('elder');
  document.getElementById('elder').setAttribute('aria-pressed', 'true');
}
render();
void load();
