package boot

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"time"

	"go.uber.org/zap"

	"netboot/internal/config"
	"netboot/internal/store"
)

// Webhook delivery defaults.
const (
	DefaultWebhookAttempts = 5
	DefaultWebhookBackoff  = 2 * time.Second // doubled after every failed try
	webhookTimeout         = 10 * time.Second
)

// WebhookPayload is the JSON body POSTed to webhook receivers (see
// docs/webhooks.md).
type WebhookPayload struct {
	// Event is one of failed, stuck, skipped, regression, succeeded.
	Event   string    `json:"event"`
	Host    string    `json:"host"`
	BootID  int64     `json:"boot_id"`
	Outcome string    `json:"outcome"`
	Reason  string    `json:"reason,omitempty"`
	Summary string    `json:"summary"`
	SentAt  time.Time `json:"sent_at"`
	Report  Report    `json:"report"`
}

// newPayload is the webhook body for a finished report.
func newPayload(r Report, now time.Time) WebhookPayload {
	return WebhookPayload{Event: webhookEvent(r), Host: r.Host, BootID: r.BootID, Outcome: r.Outcome,
		Reason: r.Reason, Summary: summary(r), SentAt: now.UTC(), Report: r}
}

// webhookEvent names the webhook event of a finished report.
func webhookEvent(r Report) string {
	if r.Regression() {
		return "regression"
	}
	return r.Outcome
}

// summary is a one-line description of a finished report.
func summary(r Report) string {
	s := fmt.Sprintf("%s boot %d %s", r.Host, r.BootID, r.Outcome)
	if r.LastStage != 0 {
		s += " at " + r.LastStage.String()
	}
	if r.Message != "" {
		s += ": " + r.Message
	}
	return s
}

// notifier POSTs reports to the configured webhooks with retries.
type notifier struct {
	hooks    []config.Webhook
	client   *http.Client
	attempts int
	backoff  time.Duration
	store    store.Reports // nil: deliveries are only logged
	log      *zap.Logger
	m        *metrics
	now      func() time.Time
	wg       sync.WaitGroup
}

// notify sends r to every webhook subscribed to its event, in the
// background.
func (n *notifier) notify(ctx context.Context, r Report) {
	ev := webhookEvent(r)
	for _, h := range n.hooks {
		if !slices.Contains(h.Events, ev) {
			continue
		}
		body, err := json.Marshal(newPayload(r, n.now()))
		if err != nil {
			n.log.Error("webhook: encode payload", zap.Error(err))
			continue
		}
		n.wg.Go(func() { n.deliver(ctx, h, ev, r, body) })
	}
}

// deliver POSTs body until the receiver answers 2xx or the attempts are
// used up, then records the delivery.
func (n *notifier) deliver(ctx context.Context, h config.Webhook, ev string, r Report, body []byte) {
	d := store.Delivery{Time: n.now().UTC(), URL: h.URL, Event: ev, Host: r.Host, BootID: r.BootID, Payload: body}
	wait := n.backoff
	for d.Attempts < n.attempts {
		d.Attempts++
		err := n.post(ctx, h, ev, body)
		if err == nil {
			d.OK, d.Error = true, ""
			break
		}
		d.Error = err.Error()
		n.log.Warn("webhook: delivery failed", zap.String("url", h.URL), zap.String("event", ev),
			zap.String("host", r.Host), zap.Int("attempt", d.Attempts), zap.Error(err))
		if d.Attempts >= n.attempts || !sleep(ctx, wait) {
			break
		}
		wait *= 2
	}
	result := "ok"
	if !d.OK {
		result = "failed"
		n.log.Error("webhook: giving up", zap.String("url", h.URL), zap.String("event", ev),
			zap.String("host", r.Host), zap.Int("attempts", d.Attempts), zap.String("error", d.Error))
	} else {
		n.log.Info("webhook: delivered", zap.String("url", h.URL), zap.String("event", ev),
			zap.String("host", r.Host), zap.Int("attempts", d.Attempts))
	}
	n.m.webhooks.WithLabelValues(result).Inc()
	if n.store != nil {
		if err := n.store.AddDelivery(context.WithoutCancel(ctx), &d); err != nil {
			n.log.Error("webhook: record delivery", zap.Error(err))
		}
	}
}

func (n *notifier) post(ctx context.Context, h config.Webhook, ev string, body []byte) error {
	ctx, cancel := context.WithTimeout(ctx, webhookTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.URL, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("post webhook: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "netbootd")
	req.Header.Set("X-Netboot-Event", ev)
	if h.Secret != "" {
		req.Header.Set("X-Netboot-Signature", "sha256="+sign(h.Secret, body))
	}
	resp, err := n.client.Do(req)
	if err != nil {
		return fmt.Errorf("post webhook: %w", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("post webhook: receiver answered %s", resp.Status)
	}
	return nil
}

// sign is the hex HMAC-SHA256 of body with secret.
func sign(secret string, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	return hex.EncodeToString(mac.Sum(nil))
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
