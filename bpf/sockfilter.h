/* Limits shared by bpf/sockfilter.bpf.c (socket filter on a raw AF_PACKET socket) and its loader
 * client/capture/sockfilter.c: how much of a packet the filter keeps. Fixed-width types only. */
#ifndef TV_BPF_SOCKFILTER_H
#define TV_BPF_SOCKFILTER_H

/* Link-layer header the filter skips: Ethernet (also the loopback device's framing). Devices
 * without a link-layer header (tun, wireguard) are read with 0. */
#define TV_SOCKFILTER_ETH_HLEN 14
/* Largest headers kept in front of the payload: Ethernet 14 + IPv4 with options 60 + TCP with
 * options 60 (IPv6 without extension headers is 40). The loader sizes ring frames with it. */
#define TV_SOCKFILTER_MAX_HEADER_BYTES (14 + 60 + 60)

#endif
