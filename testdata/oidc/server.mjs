// The OAuth 2.0 authorization server of pacc's tests: oidc-provider on a loopback address,
// with RFC 8414 metadata, open RFC 7591 registration of public clients, PKCE S256, RFC 9207
// `iss`, refresh tokens, and ES256 JWT access tokens that Dovecot validates locally.
//
// Environment: ISSUER, HOST, PORT, TLS_CERT, TLS_KEY (PEM files), PUBKEY_OUT (where the
// token-signing public key is written, PEM), USERS (JSON object address -> password),
// ACCESS_TTL (seconds); optionally PROTECTED_RESOURCES (a JSON array published as the
// metadata's `protected_resources`, oauth-public -06) and TOKEN_TYPE (rewrites `token_type`
// in every token response, e.g. `DPoP`, to test clients that must refuse it). Signing in as
// `deny@example.test` makes the server answer `access_denied`. Logs one line per token
// issued to stdout.
import Provider from 'oidc-provider';
import https from 'node:https';
import fs from 'node:fs';
import crypto from 'node:crypto';

const issuer = process.env.ISSUER;
const users = JSON.parse(process.env.USERS || '{}');
const accessTtl = Number(process.env.ACCESS_TTL || 600);
const SCOPES = ['urn:ietf:params:oauth:scope:mail', 'urn:ietf:params:oauth:scope:calendars', 'urn:ietf:params:oauth:scope:contacts'];

const { privateKey, publicKey } = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
const signingKey = { ...privateKey.export({ format: 'jwk' }), kid: 'pacc-test', use: 'sig', alg: 'ES256' };
if (process.env.PUBKEY_OUT) {
  fs.mkdirSync(process.env.PUBKEY_OUT.replace(/\/[^/]*$/, ''), { recursive: true });
  fs.writeFileSync(process.env.PUBKEY_OUT, publicKey.export({ type: 'spki', format: 'pem' }));
}

const protectedResources = process.env.PROTECTED_RESOURCES ? JSON.parse(process.env.PROTECTED_RESOURCES) : undefined;

const provider = new Provider(issuer, {
  ...(protectedResources ? { discovery: { protected_resources: protectedResources } } : {}),
  jwks: { keys: [signingKey] },
  cookies: { keys: [crypto.randomBytes(16).toString('hex')] },
  scopes: ['openid', 'offline_access', ...SCOPES],
  claims: { openid: ['sub'] },
  clientDefaults: { grant_types: ['authorization_code', 'refresh_token'], response_types: ['code'], id_token_signed_response_alg: 'ES256' },
  features: {
    devInteractions: { enabled: false },
    // RFC 8628 for headless clients.
    deviceFlow: { enabled: true },
    registration: { enabled: true },
    revocation: { enabled: true },
    resourceIndicators: {
      enabled: true,
      // One token for every mail service: a grant for several resources yields the
      // token of the first when the token request names none; all share one audience.
      defaultResource: (ctx, client, oneOf) => (Array.isArray(oneOf) && oneOf.length ? oneOf[0] : 'https://mail.example.test/'),
      useGrantedResource: () => true,
      getResourceServerInfo: () => ({
        scope: SCOPES.join(' '),
        audience: 'pacc-mail',
        accessTokenTTL: accessTtl,
        accessTokenFormat: 'jwt',
        jwt: { sign: { alg: 'ES256' } },
      }),
    },
  },
  pkce: { required: () => true },
  // Dovecot 2.3 validates only `typ: JWT` (it rejects RFC 9068's `at+jwt`).
  formats: { customizers: { jwt: async (ctx, token, jwt) => { jwt.header = { typ: 'JWT' }; } } },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  findAccount: async (ctx, sub) => (sub in users ? { accountId: sub, claims: async () => ({ sub }) } : undefined),
  ttl: { AccessToken: accessTtl, AuthorizationCode: 60, IdToken: 600, RefreshToken: 86400, Interaction: 600, Session: 3600, Grant: 86400 },
});
provider.on('server_error', (ctx, err) => console.error('server_error', err));
provider.on('access_token.saved', () => {});
provider.on('grant.success', (ctx) => console.log(`token issued grant_type=${ctx.oidc.params.grant_type}`));

const callback = provider.callback();
const form = (uid, message) => `<!doctype html><title>Sign in</title><p>${message || ''}</p>` +
  `<form method="post" action="/interaction/${uid}"><input name="login"><input name="password" type="password"><button>Sign in</button></form>`;

const server = https.createServer({ cert: fs.readFileSync(process.env.TLS_CERT), key: fs.readFileSync(process.env.TLS_KEY), minVersion: 'TLSv1.2' }, async (req, res) => {
  const m = req.url.match(/^\/interaction\/([\w-]+)$/);
  if (process.env.TOKEN_TYPE && req.url.startsWith('/token')) {
    const end = res.end.bind(res);
    res.end = (chunk, ...rest) => {
      try {
        const j = JSON.parse(chunk.toString());
        if (j.token_type) {
          j.token_type = process.env.TOKEN_TYPE;
          chunk = JSON.stringify(j);
          res.setHeader('content-length', Buffer.byteLength(chunk));
        }
      } catch {}
      return end(chunk, ...rest);
    };
  }
  if (!m) return callback(req, res);
  try {
    const details = await provider.interactionDetails(req, res);
    if (details.prompt.name === 'consent') {
      // A test server: consent is given automatically for what the client asked.
      const { prompt: { details: missing }, params, session, grantId } = details;
      const grant = grantId ? await provider.Grant.find(grantId) : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
      if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
      if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
      if (missing.missingResourceScopes) for (const [r, s] of Object.entries(missing.missingResourceScopes)) grant.addResourceScope(r, s.join(' '));
      return await provider.interactionFinished(req, res, { consent: { grantId: await grant.save() } }, { mergeWithLastSubmission: true });
    }
    if (req.method === 'GET') {
      res.setHeader('content-type', 'text/html');
      return res.end(form(details.uid));
    }
    let body = '';
    for await (const chunk of req) body += chunk;
    const fields = new URLSearchParams(body);
    const login = fields.get('login');
    if (login === 'deny@example.test') {
      return await provider.interactionFinished(req, res, { error: 'access_denied', error_description: 'the user declined the request' }, { mergeWithLastSubmission: false });
    }
    if (!(login in users) || users[login] !== fields.get('password')) {
      res.statusCode = 401;
      res.setHeader('content-type', 'text/html');
      return res.end(form(details.uid, 'invalid credentials'));
    }
    await provider.interactionFinished(req, res, { login: { accountId: login } }, { mergeWithLastSubmission: false });
  } catch (e) {
    res.statusCode = 400;
    res.end(String(e));
  }
});
server.listen(Number(process.env.PORT || 443), process.env.HOST, () => console.log(`READY ${issuer}`));
