/* See netstack.h. RFC 826 (ARP), 791 (IPv4), 768 (UDP), 792 (ICMP). */
#include "netstack.h"

#include <string.h>

#define ETH_HDR 14
#define ETHERTYPE_IPV4 0x0800
#define ETHERTYPE_ARP 0x0806
#define IP_HDR 20
#define IPPROTO_ICMP 1
#define IPPROTO_UDP 17
#define UDP_HDR 8

static struct virtio_net nic;
static uint8_t gateway_mac[6];
static int gateway_known;
static uint16_t ip_id;

static const uint8_t broadcast_mac[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};

static struct {
  uint16_t port;
  udp_handler_t h;
} binds[4];

/* The Internet checksum (RFC 1071) of `len` bytes, added to `sum`. */
static uint32_t csum_add(uint32_t sum, const uint8_t *p, uint32_t len) {
  for (; len > 1; p += 2, len -= 2) sum += get16(p);
  if (len) sum += (uint32_t)p[0] << 8;
  return sum;
}

static uint16_t csum_fold(uint32_t sum) {
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return (uint16_t)~sum;
}

/* UDP checksum over the pseudo-header and the UDP header + payload. */
static uint16_t udp_csum(uint32_t src, uint32_t dst, const uint8_t *udp, uint32_t len) {
  uint32_t sum = (src >> 16) + (src & 0xffff) + (dst >> 16) + (dst & 0xffff);
  sum += IPPROTO_UDP + len;
  return csum_fold(csum_add(sum, udp, len));
}

/* Fills the Ethernet header of a frame from us. */
static void eth_header(uint8_t *f, const uint8_t *dst, uint16_t type) {
  memcpy(f, dst, 6);
  memcpy(f + 6, nic.mac, 6);
  put16(f + 12, type);
}

static void arp_send(uint16_t op, const uint8_t *tha, uint32_t tpa, const uint8_t *eth_dst) {
  int id;
  uint8_t *f = net_tx_buf(&nic, &id);
  uint8_t *a = f + ETH_HDR;
  eth_header(f, eth_dst, ETHERTYPE_ARP);
  put16(a, 1);              /* hardware: Ethernet */
  put16(a + 2, ETHERTYPE_IPV4);
  a[4] = 6;
  a[5] = 4;
  put16(a + 6, op);
  memcpy(a + 8, nic.mac, 6);
  put32(a + 14, NET_MY_IP);
  memcpy(a + 18, tha, 6);
  put32(a + 24, tpa);
  net_tx_send(&nic, id, ETH_HDR + 28);
}

static void arp_input(const uint8_t *a, uint32_t len) {
  if (len < 28 || get16(a) != 1 || get16(a + 2) != ETHERTYPE_IPV4 || a[4] != 6 || a[5] != 4)
    return;
  uint16_t op = get16(a + 6);
  uint32_t spa = get32(a + 14), tpa = get32(a + 24);
  if (spa == NET_GATEWAY_IP) {
    memcpy(gateway_mac, a + 8, 6);
    gateway_known = 1;
  }
  if (op == 1 && tpa == NET_MY_IP) arp_send(2, a + 8, spa, a + 8);
}

/*
 * Builds the IPv4 header for `payload_len` bytes of `proto` at f + ETH_HDR
 * (the payload must already be in place after it) and sends the frame.
 */
static void ip_send(int id, uint8_t *f, const uint8_t *dst_mac, uint32_t dst, uint8_t proto,
                    uint32_t payload_len) {
  uint8_t *ip = f + ETH_HDR;
  eth_header(f, dst_mac, ETHERTYPE_IPV4);
  ip[0] = 0x45; /* version 4, 5 words of header */
  ip[1] = 0;
  put16(ip + 2, (uint16_t)(IP_HDR + payload_len));
  put16(ip + 4, ip_id++);
  put16(ip + 6, 0x4000); /* don't fragment */
  ip[8] = 64;
  ip[9] = proto;
  put16(ip + 10, 0);
  put32(ip + 12, NET_MY_IP);
  put32(ip + 16, dst);
  put16(ip + 10, csum_fold(csum_add(0, ip, IP_HDR)));
  net_tx_send(&nic, id, ETH_HDR + IP_HDR + payload_len);
}

void udp_send(const struct udp_peer *to, const void *data, uint32_t len) {
  if (len > UDP_MAX_PAYLOAD) return;
  int id;
  uint8_t *f = net_tx_buf(&nic, &id);
  uint8_t *u = f + ETH_HDR + IP_HDR;
  put16(u, to->local_port);
  put16(u + 2, to->port);
  put16(u + 4, (uint16_t)(UDP_HDR + len));
  put16(u + 6, 0);
  memcpy(u + UDP_HDR, data, len);
  uint16_t c = udp_csum(NET_MY_IP, to->ip, u, UDP_HDR + len);
  put16(u + 6, c ? c : 0xffff); /* 0 would mean "no checksum" */
  ip_send(id, f, to->mac, to->ip, IPPROTO_UDP, UDP_HDR + len);
}

static void icmp_input(const uint8_t *eth_src, uint32_t src, const uint8_t *m, uint32_t len) {
  if (len < 8 || m[0] != 8 || m[1] != 0) return; /* echo request only */
  if (csum_fold(csum_add(0, m, len)) != 0) return;
  int id;
  uint8_t *f = net_tx_buf(&nic, &id);
  uint8_t *r = f + ETH_HDR + IP_HDR;
  memcpy(r, m, len);
  r[0] = 0; /* echo reply, same id, sequence and data */
  put16(r + 2, 0);
  put16(r + 2, csum_fold(csum_add(0, r, len)));
  ip_send(id, f, eth_src, src, IPPROTO_ICMP, len);
}

static void udp_input(const uint8_t *eth_src, uint32_t src, uint32_t dst, const uint8_t *u,
                      uint32_t len) {
  if (len < UDP_HDR) return;
  uint32_t ulen = get16(u + 4);
  if (ulen < UDP_HDR || ulen > len) return;
  if (get16(u + 6) != 0 && udp_csum(src, dst, u, ulen) != 0) return;
  struct udp_peer from;
  memcpy(from.mac, eth_src, 6);
  from.ip = src;
  from.port = get16(u);
  from.local_port = get16(u + 2);
  for (unsigned i = 0; i < sizeof binds / sizeof binds[0]; i++)
    if (binds[i].h && binds[i].port == from.local_port) {
      binds[i].h(&from, u + UDP_HDR, ulen - UDP_HDR);
      return;
    }
}

static void ip_input(const uint8_t *eth_src, const uint8_t *ip, uint32_t len) {
  if (len < IP_HDR || (ip[0] >> 4) != 4) return;
  uint32_t hlen = (ip[0] & 15u) * 4;
  uint32_t total = get16(ip + 2);
  if (hlen < IP_HDR || total < hlen || total > len) return;
  if (csum_fold(csum_add(0, ip, hlen)) != 0) return;
  if (get16(ip + 6) & 0x3fff) return; /* a fragment (MF or offset): not supported */
  uint32_t src = get32(ip + 12), dst = get32(ip + 16);
  if (dst != NET_MY_IP) return;
  if (ip[9] == IPPROTO_UDP) udp_input(eth_src, src, dst, ip + hlen, total - hlen);
  else if (ip[9] == IPPROTO_ICMP) icmp_input(eth_src, src, ip + hlen, total - hlen);
}

static void eth_input(const uint8_t *f, uint32_t len) {
  if (len < ETH_HDR) return;
  if (memcmp(f, nic.mac, 6) != 0 && memcmp(f, broadcast_mac, 6) != 0) return;
  uint16_t type = get16(f + 12);
  if (type == ETHERTYPE_ARP) arp_input(f + ETH_HDR, len - ETH_HDR);
  else if (type == ETHERTYPE_IPV4) ip_input(f + 6, f + ETH_HDR, len - ETH_HDR);
}

int net_start(void) {
  if (net_init(&nic) < 0) return -1;
  static const uint8_t zero_mac[6];
  arp_send(1, zero_mac, NET_GATEWAY_IP, broadcast_mac);
  return 0;
}

void udp_bind(uint16_t port, udp_handler_t h) {
  for (unsigned i = 0; i < sizeof binds / sizeof binds[0]; i++)
    if (!binds[i].h) {
      binds[i].port = port;
      binds[i].h = h;
      return;
    }
}

void net_poll(void) {
  uint8_t *f;
  uint32_t len;
  int id;
  while (net_rx_ready(&nic)) {
    if ((f = net_rx(&nic, &len, &id)) != 0) {
      eth_input(f, len);
      net_rx_release(&nic, id);
    }
  }
}

void net_serve(void) {
  for (;;) {
    net_poll();
    virtio_wait(net_rx_ready, &nic);
  }
}
