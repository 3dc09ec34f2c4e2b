/* Kernel side of `tracevault capture --mode sockfilter`: a socket filter on a raw AF_PACKET
 * socket that keeps TCP segments of the target port and cuts each to its headers plus at most
 * payload_bytes of payload; client/capture/sockfilter.c reassembles the streams from them. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "tv_event.h"
#include "sockfilter.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define PACKET_OUTGOING 4
#define IP_MF 0x2000
#define IP_OFFSET 0x1FFF
#define TCP_FIN 0x01
#define TCP_SYN 0x02
#define TCP_RST 0x04

/* Set by the loader before load (rodata). */
const volatile __u32 target_port = 0; /* --port: source or destination port; 0 = any */
/* TCP payload bytes kept per packet (--payload-bytes, <= TV_CAPTURE_PAYLOAD_BYTES) */
const volatile __u32 payload_bytes = TV_CAPTURE_DEFAULT_PAYLOAD_BYTES;
/* link-layer header in front of the IP header: TV_SOCKFILTER_ETH_HLEN or 0 */
const volatile __u32 l2_bytes = TV_SOCKFILTER_ETH_HLEN;
/* 1 on a loopback device: each packet passes the tap twice, once as PACKET_OUTGOING when sent
 * and once as PACKET_HOST when received; keeping only the second sees it once (libpcap does
 * the same for "lo"). On other devices outgoing packets are the local side's half. */
const volatile __u32 skip_outgoing = 1;

/* Returns the bytes of the packet to keep (0 drops it). The payload length user space counts
 * comes from the IP header, so cutting here bounds the copy without changing byte counts. */
SEC("socket")
int tv_sockfilter(struct __sk_buff *skb)
{
	__u32 l3 = l2_bytes, l4, ip_end, hdr_end, payload;
	__u16 sport, dport;
	__u8 b[20];

	if (skip_outgoing && skb->pkt_type == PACKET_OUTGOING)
		return 0;
	if (skb->protocol == bpf_htons(ETH_P_IP)) {
		__u16 tot_len, frag;

		if (bpf_skb_load_bytes(skb, l3, b, 20))
			return 0;
		if ((b[0] >> 4) != 4 || (b[0] & 0xf) < 5 || b[9] != IPPROTO_TCP)
			return 0;
		frag = (__u16)b[6] << 8 | b[7];
		if (frag & (IP_MF | IP_OFFSET)) /* fragments carry no usable TCP header */
			return 0;
		tot_len = (__u16)b[2] << 8 | b[3];
		l4 = l3 + (b[0] & 0xf) * 4;
		/* 0 on a GSO packet above 64 KiB (BIG TCP): the packet length says it */
		ip_end = tot_len ? l3 + tot_len : skb->len;
	} else if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
		__u16 plen;

		if (bpf_skb_load_bytes(skb, l3, b, 8))
			return 0;
		/* extension headers are not walked: TCP must be the next header */
		if ((b[0] >> 4) != 6 || b[6] != IPPROTO_TCP)
			return 0;
		plen = (__u16)b[4] << 8 | b[5];
		l4 = l3 + 40;
		ip_end = plen ? l4 + plen : skb->len;
	} else {
		return 0;
	}
	if (bpf_skb_load_bytes(skb, l4, b, 20))
		return 0;
	sport = (__u16)b[0] << 8 | b[1];
	dport = (__u16)b[2] << 8 | b[3];
	if (target_port && sport != target_port && dport != target_port)
		return 0;
	if ((b[12] >> 4) < 5)
		return 0;
	hdr_end = l4 + (b[12] >> 4) * 4;
	payload = ip_end > hdr_end ? ip_end - hdr_end : 0;
	/* a bare ACK moves no data and ends nothing: not worth a ring slot */
	if (payload == 0 && !(b[13] & (TCP_SYN | TCP_FIN | TCP_RST)))
		return 0;
	if (payload > payload_bytes)
		payload = payload_bytes;
	return hdr_end + payload;
}
