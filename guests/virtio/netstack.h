/*
 * A tiny IPv4 stack over virtio-net for one fixed address, as QEMU's user
 * networking (and ftvm's) sets it up: we are 10.0.2.15, the gateway is
 * 10.0.2.2. Ethernet II, ARP, IPv4 without fragments, UDP, ICMP echo.
 * No routing table: a reply goes back to the link address its request came
 * from (for user networking, always the gateway).
 */
#ifndef FTVM_NETSTACK_H
#define FTVM_NETSTACK_H

#include <stdint.h>

#include "virtio.h"

#define IP4(a, b, c, d) (((uint32_t)(a) << 24) | ((uint32_t)(b) << 16) | ((uint32_t)(c) << 8) | (d))
#define NET_MY_IP IP4(10, 0, 2, 15)
#define NET_GATEWAY_IP IP4(10, 0, 2, 2)
#define UDP_MAX_PAYLOAD (ETH_MAX_FRAME - 14 - 20 - 8)

/* Where a datagram came from; passing it to udp_send answers the sender. */
struct udp_peer {
  uint8_t mac[6];
  uint32_t ip;
  uint16_t port;       /* the remote port */
  uint16_t local_port; /* our port the datagram was sent to */
};

typedef void (*udp_handler_t)(const struct udp_peer *from, const uint8_t *data, uint32_t len);

/* Brings up the network, asks for the gateway's MAC (which also tells the
 * gateway ours). Returns -1 if there is no virtio-net device. */
int net_start(void);
/* Delivers datagrams for `port` to `h` (up to four ports). */
void udp_bind(uint16_t port, udp_handler_t h);
/* Sends a datagram to `to` from to->local_port. */
void udp_send(const struct udp_peer *to, const void *data, uint32_t len);
/* Handles every frame already received; returns when none is left. */
void net_poll(void);
/* Serves forever: poll, then sleep in wfi until a frame arrives. */
void net_serve(void) __attribute__((noreturn));

/* Big-endian field access (network order), byte by byte. */
static inline uint16_t get16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static inline uint32_t get32(const uint8_t *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static inline void put16(uint8_t *p, uint16_t v) {
  p[0] = (uint8_t)(v >> 8);
  p[1] = (uint8_t)v;
}
static inline void put32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v >> 24);
  p[1] = (uint8_t)(v >> 16);
  p[2] = (uint8_t)(v >> 8);
  p[3] = (uint8_t)v;
}

#endif
