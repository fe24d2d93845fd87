/*
 * An authoritative DNS server (RFC 1035) on UDP port 53. The zone is read
 * at boot from the virtio disk (text written by mkzone.sh, see README.md);
 * it answers A, AAAA, TXT, NS, SOA (and ANY) with AA set, NXDOMAIN with the
 * SOA for names not in the zone, NOERROR with the SOA for names that exist
 * without the asked type, REFUSED outside the zone. Answers point back to
 * the question's name (compression). Malformed queries get FORMERR, other
 * opcodes NOTIMP, and responses are never answered. Nothing is printed per
 * query: console output stays the same whatever the clients do.
 */
#include <stdio.h>
#include <string.h>

#include "netstack.h"
#include "platform.h"
#include "virtio.h"

#define ZONE_MAX 65536
#define MAX_RECORDS 128
#define MAX_NAME 255
#define MAX_RDATA 512
#define DNS_PORT 53
#define DNS_UDP_MAX 512 /* we never send more, with or without EDNS */

#define T_A 1
#define T_NS 2
#define T_SOA 6
#define T_TXT 16
#define T_AAAA 28
#define T_OPT 41
#define T_ANY 255
#define C_IN 1

#define RCODE_FORMERR 1
#define RCODE_NXDOMAIN 3
#define RCODE_NOTIMP 4
#define RCODE_REFUSED 5
#define F_QR 0x8000
#define F_OPCODE 0x7800
#define F_AA 0x0400
#define F_TC 0x0200
#define F_RD 0x0100

struct rr {
  uint8_t name[MAX_NAME]; /* wire format, lower case */
  uint8_t namelen;
  uint16_t type;
  uint32_t ttl;
  uint16_t rdlen;
  uint8_t rdata[MAX_RDATA];
};

static struct virtio_blk disk;
static char zone[ZONE_MAX + 1];
static struct rr records[MAX_RECORDS];
static int nrecords;
static const struct rr *soa; /* the first record; its owner is the apex */

/* ---- zone file parsing (runs once at boot) ---- */

static int is_space(char c) { return c == ' ' || c == '\t' || c == '\r'; }
static char lower(char c) { return c >= 'A' && c <= 'Z' ? (char)(c + 32) : c; }

/* Next whitespace-separated token of the line at *p (quotes kept). */
static int token(const char **p, const char **tok) {
  const char *s = *p;
  while (is_space(*s)) s++;
  *tok = s;
  if (*s == '"') {
    for (s++; *s && *s != '\n' && *s != '"'; s++)
      if (*s == '\\' && s[1] && s[1] != '\n') s++;
    if (*s == '"') s++;
  } else {
    while (*s && *s != '\n' && !is_space(*s)) s++;
  }
  *p = s;
  return (int)(s - *tok);
}

/* "www.example.test." -> 3www7example4test0, lower case. Returns length. */
static int name_to_wire(const char *t, int n, uint8_t *out) {
  int o = 0;
  if (n == 1 && t[0] == '.') n = 0; /* the root */
  while (n > 0) {
    int l = 0;
    while (l < n && t[l] != '.') l++;
    if (l == 0 || l > 63 || o + 1 + l + 1 > MAX_NAME) return -1;
    out[o++] = (uint8_t)l;
    for (int i = 0; i < l; i++) out[o++] = (uint8_t)lower(t[i]);
    t += l;
    n -= l;
    if (n > 0) { /* skip the dot; a trailing dot ends the name */
      t++;
      n--;
    }
  }
  out[o++] = 0;
  return o;
}

static int parse_u32(const char *t, int n, uint32_t *v) {
  uint64_t x = 0;
  if (n < 1 || n > 10) return -1;
  for (int i = 0; i < n; i++) {
    if (t[i] < '0' || t[i] > '9') return -1;
    x = x * 10 + (uint64_t)(t[i] - '0');
  }
  if (x > 0xffffffffu) return -1;
  *v = (uint32_t)x;
  return 0;
}

static int parse_ipv4(const char *t, int n, uint8_t *out) {
  int part = 0, digits = 0;
  uint32_t v = 0;
  for (int i = 0; i <= n; i++) {
    if (i == n || t[i] == '.') {
      if (digits == 0 || v > 255 || part > 3) return -1;
      out[part++] = (uint8_t)v;
      v = 0;
      digits = 0;
    } else if (t[i] >= '0' && t[i] <= '9' && digits < 3) {
      v = v * 10 + (uint32_t)(t[i] - '0');
      digits++;
    } else {
      return -1;
    }
  }
  return part == 4 ? 0 : -1;
}

static int hexval(char c) {
  c = lower(c);
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

/* IPv6 text (RFC 4291 2.2 forms 1 and 2: hex groups, one "::"). */
static int parse_ipv6(const char *t, int n, uint8_t *out) {
  uint16_t g[8];
  int ng = 0, gap = -1, i = 0;
  if (n >= 2 && t[0] == ':' && t[1] == ':') {
    gap = 0;
    i = 2;
  }
  while (i < n) {
    uint32_t v = 0;
    int d = 0;
    while (i < n && hexval(t[i]) >= 0 && d < 4) v = v * 16 + (uint32_t)hexval(t[i++]), d++;
    if (d == 0 || ng == 8) return -1;
    g[ng++] = (uint16_t)v;
    if (i == n) break;
    if (t[i] != ':') return -1;
    i++;
    if (i < n && t[i] == ':') {
      if (gap >= 0) return -1;
      gap = ng;
      i++;
    } else if (i == n) {
      return -1; /* a trailing single colon */
    }
  }
  if (gap < 0 ? ng != 8 : ng > 7) return -1;
  int zeros = 8 - ng;
  for (int k = 0, o = 0; k <= ng; k++) {
    if (k == gap)
      for (int z = 0; z < zeros; z++) out[o++] = 0, out[o++] = 0;
    if (k < ng) out[o++] = (uint8_t)(g[k] >> 8), out[o++] = (uint8_t)g[k];
  }
  return 0;
}

/* TXT: one or more "quoted strings" (\" and \\ escapes) or bare words. */
static int parse_txt(const char **p, uint8_t *out) {
  int o = 0;
  const char *t;
  int n;
  while ((n = token(p, &t)) > 0) {
    int quoted = t[0] == '"';
    if (quoted && (n < 2 || t[n - 1] != '"')) return -1;
    int start = o++;
    for (int i = quoted; i < n - quoted; i++) {
      if (t[i] == '\\') i++;
      if (o >= MAX_RDATA || o - start - 1 >= 255) return -1;
      out[o++] = (uint8_t)t[i];
    }
    out[start] = (uint8_t)(o - start - 1);
  }
  return o > 0 ? o : -1;
}

static int type_of(const char *t, int n) {
  static const struct {
    const char *name;
    int type;
  } types[] = {{"A", T_A}, {"NS", T_NS}, {"SOA", T_SOA}, {"TXT", T_TXT}, {"AAAA", T_AAAA}};
  for (unsigned i = 0; i < sizeof types / sizeof types[0]; i++)
    if ((int)strlen(types[i].name) == n && memcmp(types[i].name, t, (size_t)n) == 0)
      return types[i].type;
  return -1;
}

/* Parses one record line into r; returns 0, or -1 with the line unusable. */
static int parse_record(const char *line, struct rr *r) {
  const char *p = line, *t;
  int n, l;
  if ((n = token(&p, &t)) == 0 || (l = name_to_wire(t, n, r->name)) < 0) return -1;
  r->namelen = (uint8_t)l;
  if ((n = token(&p, &t)) == 0 || (l = type_of(t, n)) < 0) return -1;
  r->type = (uint16_t)l;
  if ((n = token(&p, &t)) == 0 || parse_u32(t, n, &r->ttl) < 0) return -1;
  uint8_t *d = r->rdata;
  switch (r->type) {
    case T_A:
      n = token(&p, &t);
      if (parse_ipv4(t, n, d) < 0) return -1;
      r->rdlen = 4;
      break;
    case T_AAAA:
      n = token(&p, &t);
      if (parse_ipv6(t, n, d) < 0) return -1;
      r->rdlen = 16;
      break;
    case T_NS:
      n = token(&p, &t);
      if (n == 0 || (l = name_to_wire(t, n, d)) < 0) return -1;
      r->rdlen = (uint16_t)l;
      break;
    case T_SOA: { /* mname rname serial refresh retry expire minimum */
      int o = 0;
      for (int k = 0; k < 2; k++) {
        n = token(&p, &t);
        if (n == 0 || (l = name_to_wire(t, n, d + o)) < 0) return -1;
        o += l;
      }
      for (int k = 0; k < 5; k++) {
        uint32_t v;
        n = token(&p, &t);
        if (parse_u32(t, n, &v) < 0) return -1;
        put32(d + o, v);
        o += 4;
      }
      r->rdlen = (uint16_t)o;
      break;
    }
    case T_TXT:
      if ((l = parse_txt(&p, d)) < 0) return -1;
      r->rdlen = (uint16_t)l;
      break;
  }
  return token(&p, &t) == 0 ? 0 : -1; /* nothing may follow */
}

/* Reads the zone text from the disk, up to the first NUL. */
static int read_zone(void) {
  uint32_t max = ZONE_MAX / SECTOR_SIZE;
  if (disk.capacity < max) max = (uint32_t)disk.capacity;
  for (uint32_t s = 0; s < max; s++) {
    char *dst = zone + s * SECTOR_SIZE;
    if (blk_read(&disk, s, dst, 1) != VIRTIO_BLK_S_OK) return -1;
    if (memchr(dst, 0, SECTOR_SIZE)) return 0;
  }
  zone[max * SECTOR_SIZE] = 0;
  return 0;
}

static int load_zone(void) {
  int lineno = 0;
  for (const char *line = zone; *line;) {
    const char *end = strchr(line, '\n');
    if (!end) end = line + strlen(line);
    lineno++;
    const char *p = line, *t;
    if (token(&p, &t) > 0 && t[0] != '#') {
      if (nrecords == MAX_RECORDS) {
        printf("dns: zone line %d: more than %d records\n", lineno, MAX_RECORDS);
        return -1;
      }
      struct rr *r = &records[nrecords];
      if (parse_record(line, r) < 0) {
        printf("dns: zone line %d: cannot parse\n", lineno);
        return -1;
      }
      if ((nrecords == 0) != (r->type == T_SOA)) {
        printf("dns: zone line %d: the first record, and only it, must be the SOA\n", lineno);
        return -1;
      }
      nrecords++;
    }
    line = *end ? end + 1 : end;
  }
  if (nrecords == 0) {
    printf("dns: empty zone\n");
    return -1;
  }
  soa = &records[0];
  return 0;
}

/* ---- query handling ---- */

/* Whether `sub` equals `name` or lies below it (label-wise suffix). */
static int is_at_or_below(const uint8_t *sub, int sublen, const uint8_t *name, int namelen) {
  for (int k = 0; k < sublen; k += sub[k] + 1) {
    if (sublen - k == namelen && memcmp(sub + k, name, (size_t)namelen) == 0) return 1;
    if (sub[k] == 0) break;
  }
  return 0;
}

static uint8_t reply[DNS_UDP_MAX];

/* Appends one resource record; returns the new length or -1 if full. */
static int put_rr(int o, const uint8_t *name, int namelen, const struct rr *r, int limit) {
  if (o + namelen + 10 + r->rdlen > limit) return -1;
  memcpy(reply + o, name, (size_t)namelen);
  o += namelen;
  put16(reply + o, r->type);
  put16(reply + o + 2, C_IN);
  put32(reply + o + 4, r->ttl);
  put16(reply + o + 8, r->rdlen);
  memcpy(reply + o + 10, r->rdata, r->rdlen);
  return o + 10 + r->rdlen;
}

static void send_header_only(const struct udp_peer *from, const uint8_t *q, uint16_t flags) {
  memset(reply, 0, 12);
  memcpy(reply, q, 2); /* id */
  put16(reply + 2, flags);
  udp_send(from, reply, 12);
}

static void dns_query(const struct udp_peer *from, const uint8_t *q, uint32_t len) {
  if (len < 12) return;               /* not even a header: drop */
  uint16_t qflags = get16(q + 2);
  if (qflags & F_QR) return;          /* a response: never answer one */
  uint16_t flags = F_QR | (qflags & (F_OPCODE | F_RD));
  if (qflags & F_OPCODE) {
    send_header_only(from, q, flags | RCODE_NOTIMP);
    return;
  }
  if (get16(q + 4) != 1) {
    send_header_only(from, q, flags | RCODE_FORMERR);
    return;
  }
  /* The question name, lower-cased. Pointers are refused here: a question
   * has nothing before it to point at, and refusing them rules out loops. */
  uint8_t qname[MAX_NAME];
  uint32_t pos = 12;
  int qlen = 0;
  for (;;) {
    if (pos >= len) goto formerr;
    uint8_t l = q[pos];
    if (l & 0xc0) goto formerr;
    if (qlen + 1 + l > MAX_NAME || pos + 1 + l > len) goto formerr;
    qname[qlen++] = l;
    for (int i = 0; i < l; i++) qname[qlen++] = (uint8_t)lower((char)q[pos + 1 + i]);
    pos += 1u + l;
    if (l == 0) break;
  }
  if (pos + 4 > len) goto formerr;
  uint16_t qtype = get16(q + pos), qclass = get16(q + pos + 2);
  uint32_t qend = pos + 4;
  /* EDNS: an OPT record (root name, type 41) as the only additional one. */
  int edns = get16(q + 6) == 0 && get16(q + 8) == 0 && get16(q + 10) == 1 && qend + 11 <= len &&
             q[qend] == 0 && get16(q + qend + 1) == T_OPT;
  int limit = DNS_UDP_MAX - (edns ? 11 : 0);

  memcpy(reply, q, 2);
  put16(reply + 4, 1);
  memset(reply + 6, 0, 6);
  memcpy(reply + 12, q + 12, qend - 12); /* the question as asked */
  int o = (int)qend, an = 0, ns = 0, rcode = 0;
  if ((qclass != C_IN && qclass != T_ANY) ||
      !is_at_or_below(qname, qlen, soa->name, soa->namelen)) {
    rcode = RCODE_REFUSED; /* not our zone: not authoritative */
  } else {
    flags |= F_AA;
    int exists = 0;
    static const uint8_t to_question[2] = {0xc0, 12};
    for (int i = 0; i < nrecords; i++) {
      const struct rr *r = &records[i];
      if (is_at_or_below(r->name, r->namelen, qname, qlen)) exists = 1;
      if (r->namelen != qlen || memcmp(r->name, qname, (size_t)qlen) != 0) continue;
      if (qtype != r->type && qtype != T_ANY) continue;
      int next = put_rr(o, to_question, 2, r, limit);
      if (next < 0) { /* truncated: the client should retry over TCP */
        flags |= F_TC;
        break;
      }
      o = next;
      an++;
    }
    if (!exists) rcode = RCODE_NXDOMAIN;
    if (an == 0 && !(flags & F_TC)) { /* negative answer: the SOA (RFC 2308) */
      int next = put_rr(o, soa->name, soa->namelen, soa, limit);
      if (next > 0) o = next, ns = 1;
    }
  }
  put16(reply + 2, (uint16_t)(flags | rcode));
  put16(reply + 6, (uint16_t)an);
  put16(reply + 8, (uint16_t)ns);
  if (edns) { /* a minimal OPT: UDP size 1232, no options */
    static const uint8_t opt[11] = {0, 0, T_OPT, 0x04, 0xd0, 0, 0, 0, 0, 0, 0};
    memcpy(reply + o, opt, sizeof opt);
    o += sizeof opt;
    put16(reply + 10, 1);
  }
  udp_send(from, reply, (uint32_t)o);
  return;
formerr:
  send_header_only(from, q, flags | RCODE_FORMERR);
}

int main(void) {
  if (blk_init(&disk) < 0) {
    printf("dns: no virtio-blk disk\n");
    return 1;
  }
  if (read_zone() < 0) {
    printf("dns: cannot read the zone from the disk\n");
    return 1;
  }
  if (load_zone() < 0) return 1;
  if (net_start() < 0) {
    printf("dns: no virtio-net device\n");
    return 1;
  }
  udp_bind(DNS_PORT, dns_query);
  printf("dns: serving %d records\n", nrecords);
  net_serve();
}
